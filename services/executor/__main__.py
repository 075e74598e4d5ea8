"""``python -m services.executor``: lease READY jobs and run their handlers until SIGTERM.

Settings come from the environment (see services/executor/settings.py); flags override them.
Exit codes: 0 after a clean shutdown, 2 for bad settings, handler modules that do not load, a metrics
port that cannot be bound, or a database schema behind the code (run ``jobservice migrate``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence

from opentelemetry import trace

from services.executor.handlers.send_email import SmtpSettings
from services.executor.metrics import serve_metrics
from services.executor.registry import (
    HandlerRegistry,
    RegistryError,
    default_registry,
    load_entry_points,
    load_handler_modules,
)
from services.executor.service import DATABASE_THREADS, Executor
from services.executor.settings import ExecutorSettings
from services.executor.telemetry import ExecutorTracing
from shared.database import Database
from shared.settings import SettingsError
from shared.telemetry import JOB_TYPE_LABEL, configure_logging, configure_tracing, shutdown_tracing

logger = logging.getLogger("services.executor")

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per setting (each overriding its variable), and --list-handlers."""
    parser = argparse.ArgumentParser(
        prog="python -m services.executor",
        description="Lease READY jobs from PostgreSQL, run the handler registered for each job's type, "
        "and write the outcomes back. Run as many executors as you like, on any machines. Types with "
        "rate or concurrency limits (SetTypeLimits) are leased within them, across all executors; "
        "completion webhooks are delivered by the built-in jobs.callback type.",
        epilog="Every flag overrides the environment variable named in its help. Read from the environment "
        "only: " + ", ".join(ExecutorSettings.environment_only()) + " (secrets stay out of the process list) "
        "and the send_email handler's " + ", ".join(SmtpSettings.environment_only()) + ". "
        "SIGTERM or SIGINT drains: no new leases, running jobs get the grace period, unfinished ones are "
        "handed back; a second signal skips the rest of the grace.",
    )
    ExecutorSettings.add_flags(parser)
    parser.add_argument(
        "--list-handlers",
        action="store_true",
        help="print the registered job types, how their handlers run, where they come from and what payload"
        " they take (dict, or a model's name), then exit",
    )
    return parser


def resolve_types(requested: Sequence[str], registry: HandlerRegistry) -> list[str]:
    """The types this executor leases: the requested ones that have a handler, or every registered type."""
    if not requested:
        return registry.types()
    missing = [job_type for job_type in requested if job_type not in registry]
    if missing:
        logger.warning(
            "EXECUTOR_TYPES names types without a handler, which this executor will not lease: %s (registered: %s)",
            ", ".join(missing),
            ", ".join(registry.types()),
        )
    return [job_type for job_type in requested if job_type in registry]


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Parse, configure, check, and run the executor; the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = ExecutorSettings.from_args(args, env)
    except SettingsError as error:
        print(f"executor: {error}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging("executor", settings.log_level, settings.log_format)

    registry = default_registry
    try:
        import services.executor.handlers  # registers the built-in handlers

        services.executor.handlers.callback.configure(settings.callback)
        services.executor.handlers.http_request.configure(settings.egress)
        load_entry_points(registry)
        load_handler_modules(settings.handler_modules)
    except RegistryError as error:
        logger.error("%s", error)
        return EXIT_USAGE
    if args.list_handlers:
        for registration in registry:
            payload = registration.payload_type
            takes = "dict" if payload is None else f"{payload.__module__}.{payload.__qualname__}"
            print(f"{registration.job_type}\t{registration.mode.value}\t{registration.origin}\t{takes}")
        return 0

    types = resolve_types(settings.types, registry)
    if not types:
        logger.error("no job type to run: EXECUTOR_TYPES=%s has no registered handler", ",".join(settings.types))
        return EXIT_USAGE
    for job_type in types:
        found = registry.get(job_type)
        check = found.check if found is not None else None
        if check is not None:
            try:
                check()
            except (SettingsError, ValueError) as error:
                logger.error("job type %s cannot run: %s", job_type, error)
                return EXIT_USAGE

    JOB_TYPE_LABEL.cap = settings.metrics_max_label_values
    try:
        serve_metrics(settings.metrics_port, settings.metrics_bind_host)
    except OSError as error:
        logger.error(
            "METRICS_PORT=%d cannot be served on METRICS_BIND_HOST=%s: %s",
            settings.metrics_port,
            settings.metrics_bind_host,
            error,
        )
        return EXIT_USAGE

    # OTEL_* variables choose the exporter; without an endpoint there is no span work at all.
    traced = configure_tracing("jobs-executor")
    db = Database(
        settings.database_url,
        "executor",
        pool_size=DATABASE_THREADS + 1,
        threads=DATABASE_THREADS,
        tracer=trace.get_tracer("shared.database") if traced else None,
        pooler=settings.database_pooler,
    )
    try:
        return asyncio.run(Executor(settings, registry, types, db, ExecutorTracing() if traced else None).run())
    finally:
        db.close()
        shutdown_tracing()


def _exit(code: int) -> None:
    logging.shutdown()
    if any(thread.name.startswith("handler") and thread.is_alive() for thread in threading.enumerate()):
        # A sync handler that never returns would make the interpreter wait for its thread forever.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    _exit(main())
