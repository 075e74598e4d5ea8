"""The executor's settings: one frozen object, built from the environment and the flags at start.

Each field is one declaration (shared/settings.py): variable, flag, type, range, default and help, from which
``--help`` and the README's table are made too. The send_email handler's SMTP settings are declared with it
(services/executor/handlers/send_email.py) and read only when an executor will run it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.egress import EgressPolicy
from shared.jobs import TYPE_PATTERN
from shared.settings import ProcessSettings, Settings, SettingsError, metrics_bind_host, metrics_port, setting

__all__ = ["CallbackSettings", "ExecutorSettings"]

MAX_CONCURRENCY = 10_000
# A delivery job may run 30 s (migration 0005); the POST must fit inside it.
MAX_CALLBACK_TIMEOUT_SECONDS = 30.0
MIN_CALLBACK_SECRET_LENGTH = 16


def _signing_secret(raw: str) -> str:
    if len(raw) < MIN_CALLBACK_SECRET_LENGTH:
        raise ValueError(
            f"must be at least {MIN_CALLBACK_SECRET_LENGTH} characters "
            "(use a long random string, e.g. from `openssl rand -hex 32`)"
        )
    return raw


def _job_type(raw: str) -> str:
    if not TYPE_PATTERN.fullmatch(raw):
        raise ValueError("is not a job type (1-128 characters of a-z 0-9 _ . -)")
    return raw


def _tick(read: Mapping[str, Any]) -> float:
    """The heartbeat loop's interval: the cancel check's, or the heartbeat's when that is shorter."""
    return float(min(read["cancel_check_interval_seconds"], read["heartbeat_interval_seconds"]))


@dataclass(frozen=True)
class CallbackSettings(Settings):
    """How the jobs.callback handler POSTs completion webhooks."""

    signing_secret: str | None = setting(
        "CALLBACK_SIGNING_SECRET",
        None,
        "signs completion webhooks (jobs.callback): a Webhook-Signature header with an HMAC-SHA256 of the body; "
        "16+ characters; unset: unsigned. Never logged (docs/callbacks.md)",
        parse=_signing_secret,
        secret=True,
    )
    timeout_seconds: float = setting(
        "CALLBACK_TIMEOUT_SECONDS",
        10.0,
        "longest one webhook POST may take (the delivery job's own timeout is 30 s)",
        minimum=0.1,
        maximum=MAX_CALLBACK_TIMEOUT_SECONDS,
    )


@dataclass(frozen=True)
class ExecutorSettings(ProcessSettings):
    """Everything the executor process is configured with."""

    # 100, not 10: a lease takes at most the free slots, and one lease (a statement and a durable commit)
    # costs about as much for 100 jobs as for 10, so with 10 slots an executor of short jobs spent its
    # time waiting on leases of 10: a fifth of the drain it reaches at 100 (docs/benchmarks.md).
    concurrency: int = setting(
        "EXECUTOR_CONCURRENCY",
        100,
        "most jobs running at once in this process, and so the most one lease takes; lower it for handlers that "
        "must not run that many at once (or set type limits)",
        minimum=1,
        maximum=MAX_CONCURRENCY,
    )
    types: tuple[str, ...] = setting(
        "EXECUTOR_TYPES",
        (),
        "comma-separated job types to run, of those with a handler (a dedicated pool)",
        parse=_job_type,
        shown_default="every registered type",
    )
    handler_modules: tuple[str, ...] = setting(
        "EXECUTOR_HANDLERS",
        (),
        "comma-separated modules to import; their @handler functions register job types (entry points in the "
        "group jobservice.handlers are loaded too)",
        flag="--handlers",
    )
    poll_interval_seconds: float = setting(
        "EXECUTOR_POLL_INTERVAL_SECONDS",
        1.0,
        "fallback poll for READY jobs between jobs_ready notifications",
        minimum=0.01,
        maximum=3600.0,
        flag="--poll-interval",
    )
    lease_seconds: float = setting(
        "EXECUTOR_LEASE_SECONDS", 30.0, "how long a lease lasts without a heartbeat", minimum=1.0, maximum=86_400.0
    )
    heartbeat_interval_seconds: float = setting(
        "EXECUTOR_HEARTBEAT_INTERVAL_SECONDS",
        10.0,
        "how often leases are extended; below the lease",
        minimum=0.05,
        maximum=3600.0,
        derive=lambda read: min(ExecutorSettings.heartbeat_interval_seconds, read["lease_seconds"] / 3),
        shown_default="10 (at most a third of the lease)",
    )
    cancel_check_interval_seconds: float = setting(
        "EXECUTOR_CANCEL_CHECK_INTERVAL_SECONDS",
        1.0,
        "how often running jobs are checked for cancel requests and lost leases, between heartbeats",
        minimum=0.05,
        maximum=3600.0,
    )
    liveness_seconds: float = setting(
        "EXECUTOR_LIVENESS_SECONDS",
        2.0,
        "crash detection: once this executor's database session is gone (the process died) and it has not been "
        "heard from for this long, the scheduler takes its jobs back without waiting for their leases to "
        "expire; 0: only the leases' expiry counts (docs/reliability.md)",
        minimum=0.0,
        maximum=3600.0,
        derive=lambda read: max(ExecutorSettings.liveness_seconds, 2 * _tick(read)),
        shown_default="2 (at least twice the cancel check interval)",
    )
    shutdown_grace_seconds: float = setting(
        "EXECUTOR_SHUTDOWN_GRACE_SECONDS",
        30.0,
        "on SIGTERM, how long running jobs may take to finish before they are handed back",
        minimum=0.0,
        maximum=86_400.0,
        flag="--shutdown-grace",
    )
    complete_batch_size: int = setting(
        "EXECUTOR_COMPLETE_BATCH_SIZE", 1000, "most outcomes written per statement", minimum=1, maximum=100_000
    )
    complete_flush_seconds: float = setting(
        "EXECUTOR_COMPLETE_FLUSH_SECONDS",
        0.005,
        "longest an outcome waits for others to share its write",
        minimum=0.0,
        maximum=10.0,
    )
    max_result_bytes: int = setting(
        "EXECUTOR_MAX_RESULT_BYTES",
        1024 * 1024,
        "largest handler result, encoded as JSON",
        minimum=2,
        maximum=64 * 1024 * 1024,
    )
    max_abandoned_threads: int = setting(
        "EXECUTOR_MAX_ABANDONED_THREADS",
        100,  # the concurrency's default (derived from the concurrency when read from settings)
        "sync handlers still running after their timeout or cancel that do not count against the concurrency",
        minimum=0,
        maximum=MAX_CONCURRENCY,
        derive=lambda read: read["concurrency"],
        shown_default="the concurrency",
    )
    retry_backoff_base_seconds: float = setting(
        "RETRY_BACKOFF_BASE_SECONDS",
        1.0,
        "delay before a failed job's first retry; doubles per attempt, with jitter",
        minimum=0.0,
        maximum=86_400.0,
    )
    retry_backoff_cap_seconds: float = setting(
        "RETRY_BACKOFF_CAP_SECONDS",
        3600.0,
        "longest delay between attempts",
        minimum=0.0,
        maximum=30 * 86_400.0,
    )
    metrics_port: int = metrics_port(8001)
    metrics_bind_host: str = metrics_bind_host()
    callback: CallbackSettings = field(default_factory=CallbackSettings)
    egress: EgressPolicy = field(default_factory=EgressPolicy)

    def __post_init__(self) -> None:
        super().__post_init__()
        # Handlers must not reach this process's own metrics port either.
        object.__setattr__(self, "egress", self.egress.closing(self.metrics_port))

    @property
    def listens(self) -> bool:
        """Whether this executor keeps a session of its own: LISTEN jobs_ready, and its liveness lock there.
        A transaction pooler breaks both: it polls, and only its leases' expiry tells whether it died."""
        return self.database_pooler != "transaction"

    @property
    def heartbeat_tick_seconds(self) -> float:
        """How often the heartbeat loop runs: it checks running jobs, and says this executor is alive."""
        return min(self.cancel_check_interval_seconds, self.heartbeat_interval_seconds)

    def check(self) -> None:
        """The heartbeat must come well inside the lease, liveness must allow for two missed heartbeat
        ticks, and the backoff's cap not below its base."""
        if self.heartbeat_interval_seconds >= self.lease_seconds:
            raise SettingsError(
                f"EXECUTOR_HEARTBEAT_INTERVAL_SECONDS={self.heartbeat_interval_seconds} must be below "
                f"EXECUTOR_LEASE_SECONDS={self.lease_seconds}, or leases expire between heartbeats"
            )
        if 0 < self.liveness_seconds < 2 * self.heartbeat_tick_seconds:
            raise SettingsError(
                f"EXECUTOR_LIVENESS_SECONDS={self.liveness_seconds} must be 0 or at least twice "
                f"EXECUTOR_CANCEL_CHECK_INTERVAL_SECONDS={self.heartbeat_tick_seconds}, or a live executor whose "
                "session dropped could be taken for dead between two of its heartbeats"
            )
        if self.retry_backoff_cap_seconds < self.retry_backoff_base_seconds:
            raise SettingsError(
                f"RETRY_BACKOFF_CAP_SECONDS={self.retry_backoff_cap_seconds} must not be below "
                f"RETRY_BACKOFF_BASE_SECONDS={self.retry_backoff_base_seconds}"
            )
