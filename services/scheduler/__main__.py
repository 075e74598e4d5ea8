"""``python -m services.scheduler``: start a scheduler; it becomes active or stands by for the active one."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from types import FrameType
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import Engine

from services.scheduler import settings as defaults
from services.scheduler.compactor import Compactor
from services.scheduler.leader import LeaderElector
from services.scheduler.loops import Backoff, Duty
from services.scheduler.metrics import DATABASE_ERRORS, start_metrics_server
from services.scheduler.periodic import ScheduleSubmitter
from services.scheduler.promoter import Promoter
from services.scheduler.pruner import Pruner
from services.scheduler.rescuer import Rescuer
from services.scheduler.settings import SchedulerSettings
from shared.database.engine import create_database_engine
from shared.database.maintenance import (
    ChannelListener,
    CompactedCounts,
    JobMaintenance,
    LeaderLock,
    PromotedJob,
    RescuedJob,
)
from shared.database.schedules import ScheduleStore
from shared.database.schema import check_schema
from shared.errors import DatabaseUnavailable, SchemaOutOfDate
from shared.jobs import JobStatus
from shared.settings import SettingsError
from shared.telemetry import configure_logging, configure_tracing, shutdown_tracing

log = logging.getLogger("services.scheduler")

# Exit codes: 0 after SIGTERM/SIGINT, 2 when the process refuses to start (settings, schema, port).
EXIT_OK = 0
EXIT_REFUSED = 2

# Five duty threads take a pooled connection each for one transaction at a time; the leader lock and the
# listener have connections of their own outside the pool.
POOL_SIZE = 6

DESCRIPTION = """\
Run the job service's scheduler. Of all schedulers started against one database, one is active (it
holds a PostgreSQL advisory lock) and the others stand by, taking over within seconds when it dies.
The active one:
  - promotes PENDING jobs to READY when their run_at comes, waking within milliseconds of the next due
    job and on the jobs_scheduled notification, then notifies jobs_ready so executors lease them;
  - rescues PROCESSING jobs whose lease expired (their executor died): back to READY (the attempt
    counts), FAILED when no attempts are left, CANCELLED when a cancel was requested;
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
Every flag overrides the environment variable named in its help; DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/jobs) is read from the environment only, so passwords stay out of
the process list. Exit status: 0 after SIGTERM or SIGINT (duties stopped, leadership released), 2 when
it refuses to start (a bad setting, a schema that needs `make migrate`, the metrics port taken)."""

# (flag, environment variable, metavar, help)
FLAGS: tuple[tuple[str, str, str, str], ...] = (
    (
        "--metrics-port",
        "METRICS_PORT",
        "PORT",
        f"serve Prometheus metrics on this port, 0 for none (default {defaults.DEFAULT_METRICS_PORT})",
    ),
    ("--log-level", "LOG_LEVEL", "LEVEL", f"{', '.join(defaults.LOG_LEVELS)} (default INFO)"),
    ("--log-format", "LOG_FORMAT", "FORMAT", "text for people, json for log collectors (default text)"),
    (
        "--promote-batch-size",
        "SCHEDULER_PROMOTE_BATCH_SIZE",
        "N",
        f"most due jobs made READY per statement (default {defaults.DEFAULT_PROMOTE_BATCH_SIZE})",
    ),
    (
        "--max-idle-seconds",
        "SCHEDULER_MAX_IDLE_SECONDS",
        "S",
        "longest the promoter sleeps between looks for due jobs; it otherwise sleeps exactly until the next "
        f"one and wakes on jobs_scheduled (default {defaults.DEFAULT_MAX_IDLE_SECONDS})",
    ),
    (
        "--rescue-interval-seconds",
        "SCHEDULER_RESCUE_INTERVAL_SECONDS",
        "S",
        f"how often to look for expired leases (default {defaults.DEFAULT_RESCUE_INTERVAL_SECONDS})",
    ),
    (
        "--prune-interval-seconds",
        "SCHEDULER_PRUNE_INTERVAL_SECONDS",
        "S",
        f"how often to delete finished jobs past retention (default {defaults.DEFAULT_PRUNE_INTERVAL_SECONDS})",
    ),
    (
        "--prune-batch-size",
        "SCHEDULER_PRUNE_BATCH_SIZE",
        "N",
        f"most finished jobs deleted per statement (default {defaults.DEFAULT_PRUNE_BATCH_SIZE})",
    ),
    (
        "--compact-interval-seconds",
        "SCHEDULER_COMPACT_INTERVAL_SECONDS",
        "S",
        "how often to fold the job_counts rows and refresh the jobs_by_status gauges "
        f"(default {defaults.DEFAULT_COMPACT_INTERVAL_SECONDS})",
    ),
    (
        "--schedules-poll-seconds",
        "SCHEDULER_SCHEDULES_POLL_SECONDS",
        "S",
        "longest the periodic-schedule duty sleeps before looking for new schedules; it otherwise sleeps "
        f"exactly until the next occurrence (default {defaults.DEFAULT_SCHEDULES_POLL_SECONDS})",
    ),
    (
        "--leader-retry-seconds",
        "SCHEDULER_LEADER_RETRY_SECONDS",
        "S",
        "how often a standby tries to become active, and the active one checks it still is "
        f"(default {defaults.DEFAULT_LEADER_RETRY_SECONDS})",
    ),
    (
        "--retention-completed-days",
        "RETENTION_COMPLETED_DAYS",
        "DAYS",
        "delete COMPLETED and CANCELLED jobs this long after they finished; fractions allowed "
        f"(default {defaults.DEFAULT_RETENTION_COMPLETED_DAYS:g})",
    ),
    (
        "--retention-failed-days",
        "RETENTION_FAILED_DAYS",
        "DAYS",
        f"delete FAILED jobs this long after they failed (default {defaults.DEFAULT_RETENTION_FAILED_DAYS:g})",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per setting, each overriding its environment variable."""
    parser = argparse.ArgumentParser(
        prog="python -m services.scheduler",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, variable, metavar, text in FLAGS:
        parser.add_argument(flag, dest=variable, metavar=metavar, help=f"{text} [{variable}]")
    return parser


def settings_from(args: argparse.Namespace) -> SchedulerSettings:
    """The environment with the given flags laid over it, read and checked like the environment alone."""
    overrides = {name: value for name, value in vars(args).items() if value is not None}
    return SchedulerSettings.from_env({**os.environ, **overrides})


T = TypeVar("T")


class TracedJobMaintenance(JobMaintenance):
    """JobMaintenance whose statements that changed rows (or failed) leave a span each.

    Recorded after the fact, because only the answer tells whether a pass is worth a span: an idle
    scheduler runs several statements a second that change nothing, and tracing those would bury the
    rest. Used only when spans are exported (configure_tracing).
    """

    _tracer = trace.get_tracer("services.scheduler")

    def _traced(self, operation: str, call: Callable[[], T], count: Callable[[T], int]) -> T:
        started_ns = time.time_ns()
        try:
            result = call()
        except Exception as error:
            self._record(operation, started_ns, None, error)
            raise
        changed = count(result)
        if changed:
            self._record(operation, started_ns, changed, None)
        return result

    def _record(self, operation: str, started_ns: int, rows: int | None, error: Exception | None) -> None:
        attributes: dict[str, str | int] = {"db.system": "postgresql", "db.operation.name": operation}
        if rows is not None:
            attributes["db.rows_affected"] = rows
        span = self._tracer.start_span(
            operation, context=Context(), kind=SpanKind.CLIENT, start_time=started_ns, attributes=attributes
        )
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()

    def promote_due_jobs(self, limit: int) -> list[PromotedJob]:
        return self._traced("promote_due_jobs", partial(super().promote_due_jobs, limit), len)

    def rescue_expired_leases(self, limit: int) -> list[RescuedJob]:
        return self._traced("rescue_expired_leases", partial(super().rescue_expired_leases, limit), len)

    def prune_finished_jobs(self, status: JobStatus, older_than: timedelta, limit: int) -> int:
        return self._traced("prune_finished_jobs", partial(super().prune_finished_jobs, status, older_than, limit), int)

    def compact_job_counts(self, limit: int) -> CompactedCounts:
        return self._traced(
            "compact_job_counts", partial(super().compact_job_counts, limit), lambda counts: counts.folded
        )


def build_duties(settings: SchedulerSettings, engine: Engine, traced: bool = False) -> list[Duty]:
    """The five duties the active scheduler runs, configured from ``settings``; ``traced``: with spans."""
    maintenance = TracedJobMaintenance(engine) if traced else JobMaintenance(engine)
    return [
        Promoter(maintenance, ChannelListener(engine), settings.promote_batch_size, settings.max_idle_seconds),
        Rescuer(maintenance, settings.rescue_interval_seconds),
        Pruner(
            maintenance,
            settings.completed_retention,
            settings.failed_retention,
            settings.prune_batch_size,
            settings.prune_interval_seconds,
        ),
        Compactor(maintenance, settings.compact_interval_seconds),
        ScheduleSubmitter(ScheduleStore(engine), settings.schedules_poll_seconds),
    ]


def wait_for_schema(engine: Engine, stop: threading.Event) -> bool:
    """Check the schema, waiting out a database outage; False if stopped first. Raises SchemaOutOfDate."""
    backoff = Backoff()
    while not stop.is_set():
        try:
            check_schema(engine)
            return True
        except DatabaseUnavailable as error:
            delay = backoff.next_delay()
            DATABASE_ERRORS.labels("check_schema").inc()
            log.warning("cannot check the schema: %s; retrying in %.1f s", error, delay)
            stop.wait(delay)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scheduler until SIGTERM or SIGINT; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
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
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    if settings.metrics_port:
        try:
            start_metrics_server(settings.metrics_port)
        except OSError as error:
            log.error("refusing to start: cannot serve metrics on port %d: %s", settings.metrics_port, error)
            return EXIT_REFUSED
        log.info("serving metrics on :%d/metrics", settings.metrics_port)

    engine = create_database_engine(settings.database_url, "scheduler", pool_size=POOL_SIZE)
    try:
        if not wait_for_schema(engine, stop):
            return EXIT_OK
    except SchemaOutOfDate as error:
        log.error("refusing to start: %s", error)
        return EXIT_REFUSED
    try:
        LeaderElector(LeaderLock(engine), build_duties(settings, engine, traced), settings.leader_retry_seconds).run(
            stop
        )
    finally:
        engine.dispose()
    log.info("stopped")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
