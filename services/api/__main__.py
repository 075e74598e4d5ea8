"""python -m services.api: serve jobs.v1.JobService over gRPC and REST.

With API_PROCESSES=N (or --processes N) above 1 this process only supervises: it starts N api processes
(the same command, each with its own interpreter, event loop and connection pool) that share the two
ports through SO_REUSEPORT, so the kernel spreads connections among them; their metrics are summed at
/metrics through a shared PROMETHEUS_MULTIPROC_DIR. SIGTERM/SIGINT is passed on to them; when one exits
by itself the others are stopped too and the supervisor exits with its code, for the orchestrator to
restart the whole set.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from services.api.server import serve
from services.api.settings import ApiSettings
from shared.errors import SchemaOutOfDate
from shared.runtime import Shutdown
from shared.settings import SettingsError
from shared.telemetry import configure_logging, configure_tracing, shutdown_tracing

log = logging.getLogger("services.api")

# Set in the api processes a supervisor starts: "index/count".
WORKER_ENV = "JOBS_API_PROCESS"
# How long the api processes get to drain after SIGTERM before they are killed.
STOP_TIMEOUT_SECONDS = 30.0


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per setting, each overriding its environment variable."""
    parser = argparse.ArgumentParser(
        prog="python -m services.api",
        description="Serve jobs.v1.JobService over gRPC, and the same API as REST/JSON with /health, /metrics, "
        "the console (/ui) and the API docs (/docs).",
        epilog="Every flag overrides the environment variable named in its help; "
        + ", ".join(ApiSettings.environment_only())
        + " are read from the environment only, so secrets stay out of the process list.",
    )
    ApiSettings.add_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = ApiSettings.from_args(args)
    except SettingsError as exc:
        print(f"services.api: invalid setting: {exc}", file=sys.stderr)
        return 2
    configure_logging("api", settings.log_level, settings.log_format)
    if settings.processes > 1 and WORKER_ENV not in os.environ:
        return supervise(settings.processes, sys.argv[1:] if argv is None else argv)
    traced = configure_tracing("jobs-api")
    try:
        asyncio.run(_run(settings, traced))
    except SchemaOutOfDate as exc:
        log.error("%s", exc.message)
        return 2
    finally:
        shutdown_tracing()
    return 0


async def _run(settings: ApiSettings, traced: bool) -> None:
    await serve(settings, Shutdown().install().requested, traced)


def supervise(count: int, argv: list[str]) -> int:
    """Run ``count`` api processes on the same ports until a signal, or until one of them exits."""
    metrics_dir = tempfile.mkdtemp(prefix="jobs-api-metrics-")
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for index in range(1, count + 1):
            env = {**os.environ, WORKER_ENV: f"{index}/{count}", "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
            children.append(subprocess.Popen([sys.executable, "-m", "services.api", *argv], env=env))
        log.info("started %d api processes (pids %s)", count, ", ".join(str(c.pid) for c in children))
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        failed = 0
        if not stopping:
            died = next(child for child in children if child.poll() is not None)
            log.error("api process %d exited with %s: stopping the others", died.pid, died.returncode)
            failed = died.returncode if died.returncode > 0 else 1
            stop(signal.SIGTERM, None)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return failed
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
