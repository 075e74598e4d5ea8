"""``jobservice``: the server's command line, installed with its package (no checkout needed).

    jobservice migrate [--revision REV] [--sql]   apply the schema's migrations to DATABASE_URL
    jobservice api ARGS...                        the same as python -m services.api ARGS...
    jobservice scheduler ARGS...                  the same as python -m services.scheduler ARGS...
    jobservice executor ARGS...                   the same as python -m services.executor ARGS...

A process subcommand hands its arguments to that module's ``main`` untouched: the flags, ``--help``,
settings and exit codes are the module's own.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from shared.settings import ProcessSettings, SettingsError
from shared.telemetry import configure_logging

__all__ = ["PROCESSES", "main"]

PROG = "jobservice"
# Subcommand -> the module whose main(argv) runs it, with its help line.
PROCESSES = {
    "api": ("services.api.__main__", "serve jobs.v1.JobService over gRPC and REST"),
    "scheduler": ("services.scheduler.__main__", "promote due jobs, rescue expired leases, prune, schedules"),
    "executor": ("services.executor.__main__", "lease READY jobs and run their handlers"),
}
EXIT_FAILED = 1
EXIT_USAGE = 2

log = logging.getLogger("services.migrate")


def _version() -> str:
    try:
        return version("jobservice")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the job service's processes, and apply its schema. Settings come from the "
        "environment (DATABASE_URL, ...); each process's own --help lists its flags.",
        epilog="Start order: `jobservice migrate` once per release, then api, scheduler and executors in "
        "any order and number. `jobservice api --help` and so on show each process's flags.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    migrate = commands.add_parser(
        "migrate",
        help="apply the schema's migrations to DATABASE_URL (safe to repeat)",
        description="Bring the database in DATABASE_URL to the schema this version needs, applying the "
        "Alembic migrations shipped in the package (one transaction per migration). A database already "
        "there is left unchanged. Exit status: 0 done, 1 the migrations failed, 2 a bad setting.",
    )
    migrate.add_argument("--revision", default="head", help="migrate up to this revision (default: the newest)")
    migrate.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    ProcessSettings.add_flags(migrate)
    for name, (_, help_text) in PROCESSES.items():
        process = commands.add_parser(name, help=help_text, add_help=False)
        process.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def migrate(args: argparse.Namespace) -> int:
    """Apply the migrations to DATABASE_URL; the exit status."""
    from shared.database import MigrationFailed, apply_migrations

    try:
        settings = ProcessSettings.from_args(args)
    except SettingsError as exc:
        print(f"{PROG} migrate: invalid setting: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging("migrate", settings.log_level, settings.log_format)
    revision: str = args.revision
    try:
        apply_migrations(settings.database_url, revision, sql=args.sql)
    except MigrationFailed as exc:
        log.error("migrations failed: %s", exc)
        return EXIT_FAILED
    if not args.sql:
        log.info("the schema is up to date" if revision == "head" else f"the schema is at revision {revision}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jobservice`` with ``argv`` (default: the command line); returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in PROCESSES:
        # Not through argparse: every argument, --help included, belongs to the process.
        module = importlib.import_module(PROCESSES[arguments[0]][0])
        code: int = module.main(arguments[1:])
        return code
    args = build_parser().parse_args(arguments)
    return migrate(args)


if __name__ == "__main__":
    sys.exit(main())
