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
import dataclasses
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
from shared.settings import SettingsError
from shared.telemetry import configure_logging, configure_tracing, shutdown_tracing

log = logging.getLogger("services.api")

MAX_PROCESSES = 64
# Set in the api processes a supervisor starts: "index/count".
WORKER_ENV = "JOBS_API_PROCESS"
# How long the api processes get to drain after SIGTERM before they are killed.
STOP_TIMEOUT_SECONDS = 30.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.api",
        description=(
            "Serve jobs.v1.JobService over gRPC, and the same API as REST/JSON with /health and /metrics. "
            "Settings come from the environment (see services/api/settings.py and the README); "
            "these flags override the common ones."
        ),
    )
    parser.add_argument("--grpc-port", type=int, help="gRPC port (env GRPC_PORT, default 50051)")
    parser.add_argument("--http-port", type=int, help="REST, /health and /metrics port (env HTTP_PORT, default 8000)")
    parser.add_argument("--bind-host", help="address to listen on (env BIND_HOST, default 0.0.0.0)")
    parser.add_argument("--database-url", help="PostgreSQL URL (env DATABASE_URL)")
    parser.add_argument(
        "--processes",
        type=int,
        help="api processes sharing the ports, one interpreter each (env API_PROCESSES, default 1)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = ApiSettings.from_env()
    except SettingsError as exc:
        print(f"services.api: invalid setting: {exc}", file=sys.stderr)
        return 2
    overrides = {
        "grpc_port": args.grpc_port,
        "http_port": args.http_port,
        "bind_host": args.bind_host,
        "database_url": args.database_url,
        "processes": args.processes,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    configure_logging("api", settings.log_level, settings.log_format)
    if not 1 <= settings.processes <= MAX_PROCESSES:
        log.error("--processes must be between 1 and %d, got %d", MAX_PROCESSES, settings.processes)
        return 2
    if settings.processes > 1 and WORKER_ENV not in os.environ:
        return supervise(settings.processes, sys.argv[1:] if argv is None else argv)
    configure_tracing("jobs-api")
    try:
        asyncio.run(_run(settings))
    except SchemaOutOfDate as exc:
        log.error("%s", exc.message)
        return 2
    finally:
        shutdown_tracing()
    return 0


async def _run(settings: ApiSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(settings, stop)


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
