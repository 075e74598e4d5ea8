"""python -m services.api: serve jobs.v1.JobService over gRPC and REST."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys

from services.api.server import serve
from services.api.settings import ApiSettings
from shared.errors import SchemaOutOfDate
from shared.settings import SettingsError
from shared.telemetry import configure_logging, configure_tracing, shutdown_tracing

log = logging.getLogger("services.api")


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
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    configure_logging("api", settings.log_level, settings.log_format)
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


if __name__ == "__main__":
    sys.exit(main())
