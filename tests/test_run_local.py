"""`make run` as a newcomer uses it: start, submit a job over REST, see it done, Ctrl-C, nothing left behind.

Runs `python -m scripts.run_local` with DATABASE_URL unset, so it starts its own embedded PostgreSQL (data in
a temporary folder through RUN_LOCAL_DATA_DIR) and every port is a free one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ROOT, free_port, wait_until

SERVICES = ("api", "scheduler", "executor")
MISSING = [name for name in SERVICES if not (ROOT / "services" / name / "__main__.py").is_file()]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"services not written yet: {', '.join(MISSING)}"),
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the child processes through /proc"),
]

READY_TIMEOUT_SECONDS = 90
JOB_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 60


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def http_json(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def answers_200(url: str) -> bool:
    return http_status(url) == 200


def children_of(pid: int) -> dict[int, str]:
    """pid → command line of every live process whose parent is ``pid``."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    """A zombie counts as gone: it has exited and only waits for its parent to collect the status."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """The embedded PostgreSQL's folder, outside pytest's tmp_path.

    Run as root, pgserver runs PostgreSQL as another user, who must be able to traverse every parent
    folder; pytest resets its own /tmp/pytest-of-<user> to owner-only whenever a session starts.
    """
    folder = Path(tempfile.mkdtemp(prefix="run-local-test-"))
    yield folder / "pg"
    shutil.rmtree(folder, ignore_errors=True)


def test_make_run_serves_a_job_then_ctrl_c_stops_everything(tmp_path: Path, data_dir: Path) -> None:
    grpc_port, http_port, scheduler_port, executor_port = distinct_free_ports(4)
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "METRICS_PORT"}}
    env.update(
        RUN_LOCAL_DATA_DIR=str(data_dir),
        GRPC_PORT=str(grpc_port),
        HTTP_PORT=str(http_port),
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
    )
    log_path = tmp_path / "run_local.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scripts.run_local",
            "--scheduler-metrics-port",
            str(scheduler_port),
            "--executor-metrics-port",
            str(executor_port),
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{http_port}"
    children: dict[int, str] = {}
    postmaster_pid: int | None = None

    def output() -> str:
        return log_path.read_text(errors="replace")[-6000:]

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"run_local exited early with {process.returncode}:\n{output()}")
        try:
            return http_json("GET", f"{base}/health") == (200, {"status": "ok"})
        except OSError:
            return False

    try:
        wait_until(healthy, READY_TIMEOUT_SECONDS, interval=0.1, what=f"{base}/health")
        ready_seconds = time.monotonic() - started
        print(f"run_local answered /health after {ready_seconds:.1f}s")

        children = children_of(process.pid)
        modules = sorted(cmd.split(" -m ", 1)[-1].split()[0] for cmd in children.values() if " -m " in cmd)
        assert modules == ["services.api", "services.executor", "services.scheduler"], children
        postmaster_pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        assert alive(postmaster_pid)

        # The scheduler and the executor each got a metrics port of their own.
        for port in (scheduler_port, executor_port):
            url = f"http://127.0.0.1:{port}/metrics"
            wait_until(partial(answers_200, url), 20, what=url)

        status, job = http_json("POST", f"{base}/jobs", {"type": "echo", "payload": {"hello": "world"}})
        assert status in (200, 201), job
        job_id = job["job_id"]

        def completed() -> bool:
            nonlocal job
            status, job = http_json("GET", f"{base}/jobs/{job_id}")
            assert status == 200, job
            assert job["status"] not in {"FAILED", "CANCELLED"}, job
            return bool(job["status"] == "COMPLETED")

        wait_until(completed, JOB_TIMEOUT_SECONDS, interval=0.1, what=f"job {job_id} to complete")
        assert job["result"] == {"hello": "world"}

        process.send_signal(signal.SIGINT)
        code = process.wait(STOP_TIMEOUT_SECONDS)
        assert code == 0, output()
        left = {pid: cmd for pid, cmd in children.items() if alive(pid)}
        assert not left, f"children still running after run_local exited: {left}"
        assert not alive(postmaster_pid), "the embedded PostgreSQL is still running"
        assert not (data_dir / "postmaster.pid").exists(), "the embedded PostgreSQL did not shut down cleanly"
        assert "all stopped" in output()
    finally:
        # On failure leave nothing running: run_local, its children, the embedded server.
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for pid in [*children, *([postmaster_pid] if postmaster_pid else [])]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        log_file.close()


def test_a_process_that_dies_stops_the_rest_and_fails_the_run(data_dir: Path) -> None:
    """An executor that cannot start (a bad setting) must not leave a half-running stack behind."""
    grpc_port, http_port, scheduler_port, executor_port = distinct_free_ports(4)
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "METRICS_PORT"}}
    env.update(
        RUN_LOCAL_DATA_DIR=str(data_dir),
        GRPC_PORT=str(grpc_port),
        HTTP_PORT=str(http_port),
        SCHEDULER_METRICS_PORT=str(scheduler_port),
        EXECUTOR_METRICS_PORT=str(executor_port),
        EXECUTOR_CONCURRENCY="lots",
        NO_COLOR="1",
    )
    result = subprocess.run(
        [sys.executable, "-m", "scripts.run_local"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT_SECONDS + READY_TIMEOUT_SECONDS,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "executor exited unexpectedly (exit code 2)" in output
    assert "EXECUTOR_CONCURRENCY" in output
    assert "embedded PostgreSQL stopped" in output
    assert not (data_dir / "postmaster.pid").exists()


def test_run_local_defaults_are_the_services_defaults() -> None:
    from scripts import run_local
    from services.api import settings as api
    from services.executor import settings as executor
    from services.scheduler import settings as scheduler

    assert run_local.DEFAULT_GRPC_PORT == api.DEFAULT_GRPC_PORT
    assert run_local.DEFAULT_HTTP_PORT == api.DEFAULT_HTTP_PORT
    assert run_local.DEFAULT_SCHEDULER_METRICS_PORT == scheduler.DEFAULT_METRICS_PORT
    assert run_local.DEFAULT_EXECUTOR_METRICS_PORT == executor.DEFAULT_METRICS_PORT
    assert run_local.DEFAULT_EXECUTOR_SHUTDOWN_GRACE_SECONDS == executor.DEFAULT_SHUTDOWN_GRACE_SECONDS
