"""``python -m services.executor``: lease READY jobs and run their handlers until SIGTERM.

Settings come from the environment (see services/executor/settings.py); flags override them.
Exit codes: 0 after a clean shutdown, 2 for bad settings, handler modules that do not load, a metrics
port that cannot be bound, or a database schema behind the code (run ``make migrate``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence

from services.executor import settings as settings_module
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
from shared.database.engine import create_database_engine
from shared.database.queue import JobQueue
from shared.settings import SettingsError
from shared.telemetry import configure_logging, configure_tracing, shutdown_tracing

logger = logging.getLogger("services.executor")

EXIT_USAGE = 2

# Flag destination -> the environment variable it overrides.
FLAG_VARIABLES = {
    "concurrency": "EXECUTOR_CONCURRENCY",
    "types": "EXECUTOR_TYPES",
    "handlers": "EXECUTOR_HANDLERS",
    "poll_interval": "EXECUTOR_POLL_INTERVAL_SECONDS",
    "poll_only": "EXECUTOR_POLL_ONLY",
    "lease_seconds": "EXECUTOR_LEASE_SECONDS",
    "shutdown_grace": "EXECUTOR_SHUTDOWN_GRACE_SECONDS",
    "metrics_port": "METRICS_PORT",
    "database_url": "DATABASE_URL",
    "log_level": "LOG_LEVEL",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.executor",
        description="Lease READY jobs from PostgreSQL, run the handler registered for each job's type, "
        "and write the outcomes back. Run as many executors as you like, on any machines. Types with "
        "rate or concurrency limits (SetTypeLimits) are leased within them, across all executors; "
        "completion webhooks are delivered by the built-in jobs.callback type.",
        epilog="Every flag overrides the environment variable named in its help; more variables are "
        "listed in services/executor/settings.py (" + ", ".join(_env_only_variables()) + "). "
        "SIGTERM or SIGINT drains: no new leases, running jobs get the grace period, unfinished ones are "
        "handed back; a second signal skips the rest of the grace.",
    )
    parser.add_argument(
        "--concurrency",
        type=str,
        metavar="N",
        help=f"most jobs running at once (EXECUTOR_CONCURRENCY, default {settings_module.DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--types",
        metavar="A,B",
        help="run only these job types, of those with a handler (EXECUTOR_TYPES, default: every registered type)",
    )
    parser.add_argument(
        "--handlers",
        metavar="MODULE,MODULE",
        help="import these modules, whose @handler functions register job types (EXECUTOR_HANDLERS); "
        "entry points in the group jobservice.handlers are loaded too",
    )
    parser.add_argument(
        "--poll-interval",
        metavar="SECONDS",
        help="fallback poll for READY jobs between notifications "
        f"(EXECUTOR_POLL_INTERVAL_SECONDS, default {settings_module.DEFAULT_POLL_INTERVAL_SECONDS:g})",
    )
    parser.add_argument(
        "--poll-only",
        action="store_const",
        const="true",
        help="do not LISTEN; only poll (for connection poolers that break LISTEN) (EXECUTOR_POLL_ONLY)",
    )
    parser.add_argument(
        "--lease-seconds",
        metavar="SECONDS",
        help="how long a lease lasts without a heartbeat "
        f"(EXECUTOR_LEASE_SECONDS, default {settings_module.DEFAULT_LEASE_SECONDS:g})",
    )
    parser.add_argument(
        "--shutdown-grace",
        metavar="SECONDS",
        help="on SIGTERM, how long running jobs may take to finish before they are handed back "
        f"(EXECUTOR_SHUTDOWN_GRACE_SECONDS, default {settings_module.DEFAULT_SHUTDOWN_GRACE_SECONDS:g})",
    )
    parser.add_argument(
        "--metrics-port",
        metavar="PORT",
        help=f"Prometheus /metrics port, 0 for none (METRICS_PORT, default {settings_module.DEFAULT_METRICS_PORT})",
    )
    parser.add_argument("--database-url", metavar="URL", help="PostgreSQL URL (DATABASE_URL)")
    parser.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR (LOG_LEVEL, default INFO)")
    parser.add_argument(
        "--list-handlers",
        action="store_true",
        help="print the registered job types and where their handlers come from, then exit",
    )
    return parser


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> ExecutorSettings:
    """The environment's settings with the given flags laid over them; SettingsError names the culprit."""
    merged = dict(env)
    given = {}
    for dest, variable in FLAG_VARIABLES.items():
        value = getattr(args, dest, None)
        if value is not None:
            merged[variable] = str(value)
            given[variable] = "--" + dest.replace("_", "-")
    try:
        return ExecutorSettings.from_env(merged)
    except SettingsError as error:
        flags = [flag for variable, flag in given.items() if str(error).startswith(variable)]
        if flags:
            raise SettingsError(f"{flags[0]}: {error}") from None
        raise


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
        settings = settings_from(args, os.environ if env is None else env)
    except SettingsError as error:
        print(f"executor: {error}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging("executor", settings.log_level, settings.log_format)

    registry = default_registry
    try:
        import services.executor.handlers  # registers the built-in handlers

        services.executor.handlers.callback.configure(settings.callback)
        load_entry_points(registry)
        load_handler_modules(settings.handler_modules)
    except RegistryError as error:
        logger.error("%s", error)
        return EXIT_USAGE
    if args.list_handlers:
        for registration in registry:
            print(f"{registration.job_type}\t{registration.mode.value}\t{registration.origin}")
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

    try:
        serve_metrics(settings.metrics_port)
    except OSError as error:
        logger.error("METRICS_PORT=%d cannot be served: %s", settings.metrics_port, error)
        return EXIT_USAGE

    # OTEL_* variables choose the exporter; without an endpoint there is no span work at all.
    tracing = ExecutorTracing() if configure_tracing("jobs-executor") else None
    engine = create_database_engine(settings.database_url, "executor", pool_size=DATABASE_THREADS + 1)
    try:
        return asyncio.run(Executor(settings, registry, types, JobQueue(engine), tracing).run())
    finally:
        engine.dispose()
        shutdown_tracing()


def _env_only_variables() -> list[str]:
    flagged = set(FLAG_VARIABLES.values())
    documented = [
        line.split()[0]
        for line in (settings_module.__doc__ or "").splitlines()
        if line.startswith("    ") and line.split() and line.split()[0].isupper()
    ]
    return [name for name in documented if name not in flagged]


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
