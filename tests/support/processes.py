"""Running the real services as subprocesses, the way an operator would start them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Executors and a scheduler tuned for quick tests: short leases, heartbeats, polls and backoffs.
FAST_WORKER_ENV = {
    "EXECUTOR_LEASE_SECONDS": "2",
    "EXECUTOR_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "EXECUTOR_POLL_INTERVAL_SECONDS": "0.5",
    "EXECUTOR_SHUTDOWN_GRACE_SECONDS": "1",
    "RETRY_BACKOFF_BASE_SECONDS": "0.2",
    "RETRY_BACKOFF_CAP_SECONDS": "1",
    "SCHEDULER_RESCUE_INTERVAL_SECONDS": "0.2",
    "METRICS_PORT": "0",
    "EXECUTOR_HANDLERS": "tests.handlers_for_tests,examples.handlers",
}

# The whole service at once (api, scheduler and executors on one database, as test_system and test_faults
# run it): short leases, heartbeats, polls and backoffs, and the test handlers only.
FAST_STACK_ENV = {
    "EXECUTOR_LEASE_SECONDS": "2",
    "EXECUTOR_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "EXECUTOR_POLL_INTERVAL_SECONDS": "0.5",
    "RETRY_BACKOFF_BASE_SECONDS": "0.3",
    "RETRY_BACKOFF_CAP_SECONDS": "5",
    "SCHEDULER_RESCUE_INTERVAL_SECONDS": "0.2",
    "METRICS_PORT": "0",
    "EXECUTOR_SHUTDOWN_GRACE_SECONDS": "1",
    "EXECUTOR_HANDLERS": "tests.handlers_for_tests",
}

# A job type no handler module registers: no executor leases jobs of it, so they stay where they are put.
IDLE = "client.idle"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# How long a process may take to start, listen or lead: generous, because a loaded 2-core machine (CI beside
# other work) can take 20 s to start a Python process; a healthy start returns as soon as it is ready.
STARTUP_TIMEOUT = 60.0


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "") -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class ServiceProcess:
    """One ``python -m services.<name>`` process with its output captured to a log file. ``command``
    replaces ``python -m <module>`` (e.g. an installed ``jobservice api``), run in ``cwd``."""

    def __init__(
        self,
        module: str,
        env: Mapping[str, str],
        args: Sequence[str] = (),
        log_dir: Path | None = None,
        command: Sequence[str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.module = module
        self.args = list(args)
        self.command = [sys.executable, "-m", module] if command is None else list(command)
        self.cwd = cwd
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
        self.log_path = log_dir / f"{module.replace('.', '_')}-{os.getpid()}-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*self.command, *self.args],
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.alive():
            self.signal(signal.SIGKILL)
            assert self.process is not None
            self.process.wait(10)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process is None:
            return None
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if not self._log.closed:
            self._log.close()
        return self.process.returncode

    def wait_for_port(self, port: int, timeout: float = STARTUP_TIMEOUT) -> ServiceProcess:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.module} exited early:\n{self.output()[-3000:]}")
            return port_open(port)

        wait_until(ready, timeout, what=f"{self.module} to listen on {port}")
        return self

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
