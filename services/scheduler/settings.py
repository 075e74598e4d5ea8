"""The scheduler's settings: one frozen object, built from the environment and the flags at start.

Each field is one declaration (shared/settings.py): variable, flag, type, range, default and help, from which
``--help`` and the README's table are made too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.settings import ProcessSettings, SettingsError, metrics_bind_host, metrics_port, setting

__all__ = ["SchedulerSettings"]

# Upper bounds keep a typo (seconds given as milliseconds) from silently stalling a duty.
MAX_BATCH_SIZE = 100_000
MAX_INTERVAL_SECONDS = 24 * 3600.0
MAX_RETENTION_DAYS = 100 * 365.0
# Below this a loop would spin on the database to no one's benefit.
MIN_INTERVAL_SECONDS = 0.01


def _interval(variable: str, default: float, help: str) -> Any:
    return setting(variable, default, help, minimum=MIN_INTERVAL_SECONDS, maximum=MAX_INTERVAL_SECONDS)


def _batch(variable: str, default: int, help: str) -> Any:
    return setting(variable, default, help, minimum=1, maximum=MAX_BATCH_SIZE)


def _retention(variable: str, default: float, help: str) -> Any:
    return setting(variable, default, help, minimum=0.0, maximum=MAX_RETENTION_DAYS)


@dataclass(frozen=True)
class SchedulerSettings(ProcessSettings):
    """Everything the scheduler process can be told."""

    metrics_port: int = metrics_port(8002)
    metrics_bind_host: str = metrics_bind_host()
    promote_batch_size: int = _batch("SCHEDULER_PROMOTE_BATCH_SIZE", 1000, "most due jobs made READY per statement")
    max_idle_seconds: float = _interval(
        "SCHEDULER_MAX_IDLE_SECONDS",
        1.0,
        "longest the promoter sleeps between looks for due jobs, should a notification be lost; it otherwise "
        "sleeps exactly until the next due job and wakes on jobs_scheduled",
    )
    rescue_interval_seconds: float = _interval(
        "SCHEDULER_RESCUE_INTERVAL_SECONDS", 1.0, "how often lost jobs (expired leases, dead executors) are looked for"
    )
    prune_interval_seconds: float = _interval(
        "SCHEDULER_PRUNE_INTERVAL_SECONDS", 60.0, "how often finished jobs past their retention are looked for"
    )
    prune_batch_size: int = _batch("SCHEDULER_PRUNE_BATCH_SIZE", 500, "most finished jobs deleted per statement")
    compact_interval_seconds: float = _interval(
        "SCHEDULER_COMPACT_INTERVAL_SECONDS",
        5.0,
        "how often the job_counts rows are folded together and the jobs_by_status gauges refreshed",
    )
    leader_retry_seconds: float = _interval(
        "SCHEDULER_LEADER_RETRY_SECONDS",
        1.0,
        "how often a standby tries to become the active scheduler, and the active one checks it still is",
    )
    schedules_poll_seconds: float = _interval(
        "SCHEDULER_SCHEDULES_POLL_SECONDS",
        1.0,
        "longest the periodic-schedule duty sleeps before looking for new or changed schedules; it otherwise "
        "sleeps exactly until the next occurrence",
    )
    retention_completed_days: float = _retention(
        "RETENTION_COMPLETED_DAYS",
        7.0,
        "COMPLETED and CANCELLED jobs are deleted this many days after they finished (fractions allowed)",
    )
    retention_failed_days: float = _retention(
        "RETENTION_FAILED_DAYS", 30.0, "FAILED jobs are deleted this many days after they failed"
    )

    @property
    def completed_retention(self) -> timedelta:
        """How long COMPLETED and CANCELLED jobs are kept."""
        return timedelta(days=self.retention_completed_days)

    @property
    def failed_retention(self) -> timedelta:
        """How long FAILED jobs are kept."""
        return timedelta(days=self.retention_failed_days)

    def check(self) -> None:
        """Leadership (a session advisory lock) and wake-ups (LISTEN) need a session of their own."""
        if self.database_pooler == "transaction":
            raise SettingsError(
                "DATABASE_POOLER=transaction: the scheduler needs a session of its own (its leadership is a "
                "session advisory lock, its wake-ups a LISTEN); give it a direct DATABASE_URL (none) or a "
                "session-mode pool (session)"
            )
