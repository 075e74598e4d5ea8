"""``python -m services.scheduler``: start a scheduler; it becomes active or stands by for the active one."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from opentelemetry import trace

from services.scheduler.compactor import Compactor
from services.scheduler.leader import LeaderElector
from services.scheduler.metrics import start_metrics_server
from services.scheduler.periodic import ScheduleSubmitter
from services.scheduler.promoter import Promoter
from services.scheduler.pruner import Pruner
from services.scheduler.rescuer import Rescuer
from services.scheduler.settings import SchedulerSettings
from shared.database import Database
from shared.errors import SchemaOutOfDate
from shared.runtime import Duty, Listener, Shutdown, wait_for_schema, watch_loops
from shared.settings import SettingsError
from shared.telemetry import JOB_TYPE_LABEL, SCHEDULE_LABEL, configure_logging, configure_tracing, shutdown_tracing

log = logging.getLogger("services.scheduler")

# Exit codes: 0 after SIGTERM/SIGINT, 2 when the process refuses to start (settings, schema, port).
EXIT_OK = 0
EXIT_REFUSED = 2

# Five duties take a pooled connection each for one transaction at a time; the leader lock and the
# listener have sessions of their own outside the pool. Threads: one per duty, the lock's checks and
# the LISTEN's connects, so that neither waits behind a slow duty.
POOL_SIZE = 6
DATABASE_THREADS = 8

DESCRIPTION = """\
Run the job service's scheduler. Of all schedulers started against one database, one is active (it
holds a PostgreSQL advisory lock) and the others stand by, taking over within seconds when it dies.
The active one:
  - promotes PENDING jobs to READY when their run_at comes, waking within milliseconds of the next due
    job and on the jobs_scheduled notification, then notifies jobs_ready so executors lease them;
  - rescues PROCESSING jobs whose executor died (its session ended and it fell silent, seconds after
    the crash) or whose lease expired: back to READY (the attempt counts), FAILED when no attempts
    are left, CANCELLED when a cancel was requested;
  - deletes COMPLETED and CANCELLED jobs RETENTION_COMPLETED_DAYS after they finished, FAILED jobs
    RETENTION_FAILED_DAYS after, in small batches;
  - folds the job_counts rows that the jobs table's triggers append, so job counts stay cheap;
  - submits one job per occurrence of each periodic (cron) schedule, exactly once however many
    schedulers run, sleeping until the next occurrence (at most SCHEDULER_SCHEDULES_POLL_SECONDS, so a
    new schedule is seen within that time). Missed runs: occurrences that came due while no scheduler
    ran fire once, for the most recent of them (its job's scheduled_at is that occurrence), and the
    schedule continues from its next future occurrence; older missed ones are not back-filled.
A database outage is logged, counted and retried; it never stops the process."""

EPILOG = """\
Every flag overrides the environment variable named in its help. Exit status: 0 after SIGTERM or SIGINT
(duties stopped, leadership released), 2 when it refuses to start (a bad setting, a schema that needs
`jobservice migrate`, the metrics port taken)."""


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per setting, each overriding its environment variable."""
    parser = argparse.ArgumentParser(
        prog="python -m services.scheduler",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    SchedulerSettings.add_flags(parser)
    return parser


def build_duties(settings: SchedulerSettings, db: Database) -> tuple[list[Duty], list[Listener]]:
    """The five duties the active scheduler runs, configured from ``settings``, and what it listens to."""
    promoter = Promoter(db, settings.promote_batch_size, settings.max_idle_seconds)
    duties: list[Duty] = [
        promoter,
        Rescuer(db, settings.rescue_interval_seconds),
        Pruner(
            db,
            settings.completed_retention,
            settings.failed_retention,
            settings.prune_batch_size,
            settings.prune_interval_seconds,
        ),
        Compactor(db, settings.compact_interval_seconds),
        ScheduleSubmitter(db, settings.schedules_poll_seconds),
    ]
    return duties, [Listener("jobs_scheduled", db.listen_jobs_scheduled, promoter.notified)]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scheduler until SIGTERM or SIGINT; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = SchedulerSettings.from_args(args)
    except SettingsError as error:
        print(f"scheduler: refusing to start: {error}", file=sys.stderr)
        return EXIT_REFUSED
    configure_logging("scheduler", settings.log_level, settings.log_format)
    traced = configure_tracing("jobs-scheduler")
    try:
        return _run(settings, traced)
    finally:
        shutdown_tracing()


def _run(settings: SchedulerSettings, traced: bool) -> int:
    JOB_TYPE_LABEL.cap = SCHEDULE_LABEL.cap = settings.metrics_max_label_values
    if settings.metrics_port:
        address = f"{settings.metrics_bind_host}:{settings.metrics_port}"
        try:
            start_metrics_server(settings.metrics_port, settings.metrics_bind_host)
        except OSError as error:
            log.error("refusing to start: cannot serve metrics on %s: %s", address, error)
            return EXIT_REFUSED
        log.info("serving metrics on %s/metrics", address)
    db = Database(
        settings.database_url,
        "scheduler",
        pool_size=POOL_SIZE,
        threads=DATABASE_THREADS,
        tracer=trace.get_tracer("shared.database") if traced else None,
        pooler=settings.database_pooler,
    )
    try:
        return asyncio.run(_schedule(settings, db))
    finally:
        db.close()


async def _schedule(settings: SchedulerSettings, db: Database) -> int:
    stop = Shutdown().install().requested
    try:
        if not await wait_for_schema(db.check_schema, stop):
            return EXIT_OK
    except SchemaOutOfDate as error:
        log.error("refusing to start: %s", error)
        return EXIT_REFUSED
    duties, listeners = build_duties(settings, db)
    watch = asyncio.create_task(watch_loops(stop))
    await LeaderElector(db, duties, listeners, settings.leader_retry_seconds).run(stop)
    await watch
    log.info("stopped")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
