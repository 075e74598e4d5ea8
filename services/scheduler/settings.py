"""The scheduler's settings: one frozen object, built from the environment at start.

Environment variables (each has a command-line flag that overrides it; see ``--help``):

    DATABASE_URL                        PostgreSQL URL (postgresql://user@host:port/db)
    METRICS_PORT                        port of the Prometheus /metrics endpoint; 0 turns it off (8002)
    LOG_LEVEL                           DEBUG, INFO, WARNING or ERROR (INFO)
    LOG_FORMAT                          text or json (text)
    SCHEDULER_PROMOTE_BATCH_SIZE        most PENDING jobs made READY per statement (1000)
    SCHEDULER_MAX_IDLE_SECONDS          longest the promoter sleeps without a notification, should one
                                        be lost; it otherwise sleeps exactly until the next due job (1.0)
    SCHEDULER_RESCUE_INTERVAL_SECONDS   how often expired leases are looked for (1.0)
    SCHEDULER_PRUNE_INTERVAL_SECONDS    how often old finished jobs are looked for (60)
    SCHEDULER_PRUNE_BATCH_SIZE          most jobs deleted per statement (500)
    SCHEDULER_COMPACT_INTERVAL_SECONDS  how often the job_counts deltas are folded together (5.0)
    SCHEDULER_SCHEDULES_POLL_SECONDS    longest the periodic-schedule duty sleeps before looking for new or
                                        changed schedules; it otherwise sleeps exactly until the next
                                        occurrence (1.0)
    SCHEDULER_LEADER_RETRY_SECONDS      how often a standby tries to become leader, and the leader checks
                                        it still is (1.0)
    RETENTION_COMPLETED_DAYS            COMPLETED and CANCELLED jobs are deleted this many days after they
                                        finished (7; fractions allowed)
    RETENTION_FAILED_DAYS               FAILED jobs are deleted this many days after they failed (30)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from shared.settings import (
    DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL,
    LOG_FORMATS,
    LOG_LEVELS,
    database_url_from_env,
    env_float,
    env_int,
    env_log_format,
    env_log_level,
)

__all__ = [
    "DEFAULT_COMPACT_INTERVAL_SECONDS",
    "DEFAULT_LEADER_RETRY_SECONDS",
    "DEFAULT_MAX_IDLE_SECONDS",
    "DEFAULT_METRICS_PORT",
    "DEFAULT_PROMOTE_BATCH_SIZE",
    "DEFAULT_PRUNE_BATCH_SIZE",
    "DEFAULT_PRUNE_INTERVAL_SECONDS",
    "DEFAULT_RESCUE_INTERVAL_SECONDS",
    "DEFAULT_RETENTION_COMPLETED_DAYS",
    "DEFAULT_RETENTION_FAILED_DAYS",
    "DEFAULT_SCHEDULES_POLL_SECONDS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "SchedulerSettings",
]

DEFAULT_METRICS_PORT = 8002
DEFAULT_PROMOTE_BATCH_SIZE = 1000
DEFAULT_MAX_IDLE_SECONDS = 1.0
DEFAULT_RESCUE_INTERVAL_SECONDS = 1.0
DEFAULT_PRUNE_INTERVAL_SECONDS = 60.0
DEFAULT_PRUNE_BATCH_SIZE = 500
DEFAULT_COMPACT_INTERVAL_SECONDS = 5.0
DEFAULT_LEADER_RETRY_SECONDS = 1.0
DEFAULT_SCHEDULES_POLL_SECONDS = 1.0
DEFAULT_RETENTION_COMPLETED_DAYS = 7.0
DEFAULT_RETENTION_FAILED_DAYS = 30.0


# Upper bounds keep a typo (seconds given as milliseconds) from silently stalling a duty.
MAX_BATCH_SIZE = 100_000
MAX_INTERVAL_SECONDS = 24 * 3600.0
MAX_RETENTION_DAYS = 100 * 365.0
# Below this a loop would spin on the database to no one's benefit.
MIN_INTERVAL_SECONDS = 0.01


@dataclass(frozen=True)
class SchedulerSettings:
    """Everything the scheduler process can be told; see the module docstring for the variables."""

    database_url: str
    metrics_port: int = DEFAULT_METRICS_PORT
    log_level: str = DEFAULT_LOG_LEVEL
    log_format: str = DEFAULT_LOG_FORMAT
    promote_batch_size: int = DEFAULT_PROMOTE_BATCH_SIZE
    max_idle_seconds: float = DEFAULT_MAX_IDLE_SECONDS
    rescue_interval_seconds: float = DEFAULT_RESCUE_INTERVAL_SECONDS
    prune_interval_seconds: float = DEFAULT_PRUNE_INTERVAL_SECONDS
    prune_batch_size: int = DEFAULT_PRUNE_BATCH_SIZE
    compact_interval_seconds: float = DEFAULT_COMPACT_INTERVAL_SECONDS
    leader_retry_seconds: float = DEFAULT_LEADER_RETRY_SECONDS
    schedules_poll_seconds: float = DEFAULT_SCHEDULES_POLL_SECONDS
    retention_completed_days: float = DEFAULT_RETENTION_COMPLETED_DAYS
    retention_failed_days: float = DEFAULT_RETENTION_FAILED_DAYS

    @property
    def completed_retention(self) -> timedelta:
        """How long COMPLETED and CANCELLED jobs are kept."""
        return timedelta(days=self.retention_completed_days)

    @property
    def failed_retention(self) -> timedelta:
        """How long FAILED jobs are kept."""
        return timedelta(days=self.retention_failed_days)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SchedulerSettings:
        """Read every setting; raise SettingsError naming the first variable with a bad value."""

        def interval(name: str, default: float) -> float:
            return env_float(name, default, MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS, env)

        def batch(name: str, default: int) -> int:
            return env_int(name, default, 1, MAX_BATCH_SIZE, env)

        return cls(
            database_url=database_url_from_env(env),
            metrics_port=env_int("METRICS_PORT", DEFAULT_METRICS_PORT, 0, 65535, env),
            log_level=env_log_level(env),
            log_format=env_log_format(env),
            promote_batch_size=batch("SCHEDULER_PROMOTE_BATCH_SIZE", DEFAULT_PROMOTE_BATCH_SIZE),
            max_idle_seconds=interval("SCHEDULER_MAX_IDLE_SECONDS", DEFAULT_MAX_IDLE_SECONDS),
            rescue_interval_seconds=interval("SCHEDULER_RESCUE_INTERVAL_SECONDS", DEFAULT_RESCUE_INTERVAL_SECONDS),
            prune_interval_seconds=interval("SCHEDULER_PRUNE_INTERVAL_SECONDS", DEFAULT_PRUNE_INTERVAL_SECONDS),
            prune_batch_size=batch("SCHEDULER_PRUNE_BATCH_SIZE", DEFAULT_PRUNE_BATCH_SIZE),
            compact_interval_seconds=interval("SCHEDULER_COMPACT_INTERVAL_SECONDS", DEFAULT_COMPACT_INTERVAL_SECONDS),
            leader_retry_seconds=interval("SCHEDULER_LEADER_RETRY_SECONDS", DEFAULT_LEADER_RETRY_SECONDS),
            schedules_poll_seconds=interval("SCHEDULER_SCHEDULES_POLL_SECONDS", DEFAULT_SCHEDULES_POLL_SECONDS),
            retention_completed_days=env_float(
                "RETENTION_COMPLETED_DAYS", DEFAULT_RETENTION_COMPLETED_DAYS, 0.0, MAX_RETENTION_DAYS, env
            ),
            retention_failed_days=env_float(
                "RETENTION_FAILED_DAYS", DEFAULT_RETENTION_FAILED_DAYS, 0.0, MAX_RETENTION_DAYS, env
            ),
        )
