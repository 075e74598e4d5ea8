"""The executor's settings: one frozen object, built from the environment at start.

Environment variables (the common ones have a command-line flag that overrides them; see ``--help``):

    DATABASE_URL                          PostgreSQL URL (postgresql://user@host:port/db)
    EXECUTOR_CONCURRENCY                  most jobs running at once in this process (10)
    EXECUTOR_TYPES                        comma-separated job types to run; empty: every registered type
    EXECUTOR_HANDLERS                     comma-separated modules to import; they register handlers
    EXECUTOR_POLL_INTERVAL_SECONDS        fallback poll for READY jobs when no notification came (1.0)
    EXECUTOR_POLL_ONLY                    true: no LISTEN, poll only (for poolers that break LISTEN) (false)
    EXECUTOR_LEASE_SECONDS                how long a lease lasts without a heartbeat (30)
    EXECUTOR_HEARTBEAT_INTERVAL_SECONDS   how often leases are extended; below the lease (10)
    EXECUTOR_CANCEL_CHECK_INTERVAL_SECONDS  how often running jobs are checked for cancel requests and
                                          lost leases, between heartbeats (1.0)
    EXECUTOR_SHUTDOWN_GRACE_SECONDS       on SIGTERM, how long running jobs may take to finish (30)
    EXECUTOR_COMPLETE_BATCH_SIZE          most outcomes written per statement (1000)
    EXECUTOR_COMPLETE_FLUSH_SECONDS       longest an outcome waits for others to share its write (0.005)
    EXECUTOR_MAX_RESULT_BYTES             largest handler result, encoded as JSON (1048576)
    EXECUTOR_MAX_ABANDONED_THREADS        sync handlers still running after their timeout or cancel that
                                          do not count against the concurrency (default: the concurrency)
    RETRY_BACKOFF_BASE_SECONDS            delay before the first retry; doubles per attempt (1)
    RETRY_BACKOFF_CAP_SECONDS             longest delay between attempts (3600)
    CALLBACK_SIGNING_SECRET               signs completion webhooks (jobs.callback): a Webhook-Signature
                                          header with an HMAC-SHA256 of the body; 16+ characters; unset:
                                          unsigned. Never logged (see docs/callbacks.md)
    CALLBACK_TIMEOUT_SECONDS              longest one webhook POST may take (10; at most 30, the
                                          delivery job's own timeout)
    METRICS_PORT                          port of the Prometheus /metrics endpoint; 0 turns it off (8001)
    LOG_LEVEL                             DEBUG, INFO, WARNING or ERROR (INFO)
    LOG_FORMAT                            text or json (text)

The send_email handler reads SMTP_* variables of its own (see services/executor/handlers/email.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.jobs import TYPE_PATTERN
from shared.settings import (
    DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL,
    LOG_FORMATS,
    LOG_LEVELS,
    SettingsError,
    database_url_from_env,
    env_bool,
    env_float,
    env_int,
    env_log_format,
    env_log_level,
    env_str,
)

__all__ = [
    "DEFAULT_CALLBACK_TIMEOUT_SECONDS",
    "DEFAULT_CANCEL_CHECK_INTERVAL_SECONDS",
    "DEFAULT_COMPLETE_BATCH_SIZE",
    "DEFAULT_COMPLETE_FLUSH_SECONDS",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_HEARTBEAT_INTERVAL_SECONDS",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_MAX_RESULT_BYTES",
    "DEFAULT_METRICS_PORT",
    "DEFAULT_POLL_INTERVAL_SECONDS",
    "DEFAULT_RETRY_BACKOFF_BASE_SECONDS",
    "DEFAULT_RETRY_BACKOFF_CAP_SECONDS",
    "DEFAULT_SHUTDOWN_GRACE_SECONDS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "CallbackSettings",
    "ExecutorSettings",
]

DEFAULT_CONCURRENCY = 10
MAX_CONCURRENCY = 10_000
DEFAULT_POLL_INTERVAL_SECONDS = 1.0
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_HEARTBEAT_INTERVAL_SECONDS = 10.0
DEFAULT_CANCEL_CHECK_INTERVAL_SECONDS = 1.0
DEFAULT_SHUTDOWN_GRACE_SECONDS = 30.0
DEFAULT_COMPLETE_BATCH_SIZE = 1000
DEFAULT_COMPLETE_FLUSH_SECONDS = 0.005
DEFAULT_MAX_RESULT_BYTES = 1024 * 1024
DEFAULT_RETRY_BACKOFF_BASE_SECONDS = 1.0
DEFAULT_RETRY_BACKOFF_CAP_SECONDS = 3600.0
DEFAULT_METRICS_PORT = 8001
DEFAULT_CALLBACK_TIMEOUT_SECONDS = 10.0
# A delivery job may run 30 s (migration 0005); the POST must fit inside it.
MAX_CALLBACK_TIMEOUT_SECONDS = 30.0
MIN_CALLBACK_SECRET_LENGTH = 16


@dataclass(frozen=True)
class CallbackSettings:
    """How the jobs.callback handler POSTs completion webhooks."""

    # repr=False: settings objects get printed and logged; the secret must never be.
    signing_secret: str | None = field(default=None, repr=False)
    timeout_seconds: float = DEFAULT_CALLBACK_TIMEOUT_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CallbackSettings:
        """CALLBACK_* variables; SettingsError names a bad one (and never shows the secret)."""
        secret = env_str("CALLBACK_SIGNING_SECRET", "", env) or None
        if secret is not None and len(secret) < MIN_CALLBACK_SECRET_LENGTH:
            raise SettingsError(
                f"CALLBACK_SIGNING_SECRET must be at least {MIN_CALLBACK_SECRET_LENGTH} characters "
                "(use a long random string, e.g. from `openssl rand -hex 32`)"
            )
        return cls(
            signing_secret=secret,
            timeout_seconds=env_float(
                "CALLBACK_TIMEOUT_SECONDS", DEFAULT_CALLBACK_TIMEOUT_SECONDS, 0.1, MAX_CALLBACK_TIMEOUT_SECONDS, env
            ),
        )


@dataclass(frozen=True)
class ExecutorSettings:
    """Everything the executor process is configured with; see the module docstring for the variables."""

    database_url: str
    concurrency: int = DEFAULT_CONCURRENCY
    types: tuple[str, ...] = ()
    handler_modules: tuple[str, ...] = ()
    poll_interval_seconds: float = DEFAULT_POLL_INTERVAL_SECONDS
    poll_only: bool = False
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    heartbeat_interval_seconds: float = DEFAULT_HEARTBEAT_INTERVAL_SECONDS
    cancel_check_interval_seconds: float = DEFAULT_CANCEL_CHECK_INTERVAL_SECONDS
    shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_SECONDS
    complete_batch_size: int = DEFAULT_COMPLETE_BATCH_SIZE
    complete_flush_seconds: float = DEFAULT_COMPLETE_FLUSH_SECONDS
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    max_abandoned_threads: int = DEFAULT_CONCURRENCY
    retry_backoff_base_seconds: float = DEFAULT_RETRY_BACKOFF_BASE_SECONDS
    retry_backoff_cap_seconds: float = DEFAULT_RETRY_BACKOFF_CAP_SECONDS
    metrics_port: int = DEFAULT_METRICS_PORT
    log_level: str = DEFAULT_LOG_LEVEL
    log_format: str = DEFAULT_LOG_FORMAT
    callback: CallbackSettings = field(default_factory=CallbackSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ExecutorSettings:
        """Build the settings from environment variables; SettingsError names a bad one."""
        concurrency = env_int("EXECUTOR_CONCURRENCY", DEFAULT_CONCURRENCY, 1, MAX_CONCURRENCY, env)
        lease_seconds = env_float("EXECUTOR_LEASE_SECONDS", DEFAULT_LEASE_SECONDS, 1.0, 86_400.0, env)
        heartbeat = env_float(
            "EXECUTOR_HEARTBEAT_INTERVAL_SECONDS", min(DEFAULT_HEARTBEAT_INTERVAL_SECONDS, lease_seconds / 3), 0.05,
            3600.0, env,
        )  # fmt: skip
        if heartbeat >= lease_seconds:
            raise SettingsError(
                f"EXECUTOR_HEARTBEAT_INTERVAL_SECONDS={heartbeat} must be below EXECUTOR_LEASE_SECONDS={lease_seconds},"
                " or leases expire between heartbeats"
            )
        backoff_base = env_float("RETRY_BACKOFF_BASE_SECONDS", DEFAULT_RETRY_BACKOFF_BASE_SECONDS, 0.0, 86_400.0, env)
        backoff_cap = env_float("RETRY_BACKOFF_CAP_SECONDS", DEFAULT_RETRY_BACKOFF_CAP_SECONDS, 0.0, 30 * 86_400.0, env)
        if backoff_cap < backoff_base:
            raise SettingsError(
                f"RETRY_BACKOFF_CAP_SECONDS={backoff_cap} must not be below RETRY_BACKOFF_BASE_SECONDS={backoff_base}"
            )
        log_level = env_log_level(env)
        log_format = env_log_format(env)
        return cls(
            database_url=database_url_from_env(env),
            concurrency=concurrency,
            types=_env_types("EXECUTOR_TYPES", env),
            handler_modules=_env_list("EXECUTOR_HANDLERS", env),
            poll_interval_seconds=env_float(
                "EXECUTOR_POLL_INTERVAL_SECONDS", DEFAULT_POLL_INTERVAL_SECONDS, 0.01, 3600.0, env
            ),
            poll_only=env_bool("EXECUTOR_POLL_ONLY", False, env),
            lease_seconds=lease_seconds,
            heartbeat_interval_seconds=heartbeat,
            cancel_check_interval_seconds=env_float(
                "EXECUTOR_CANCEL_CHECK_INTERVAL_SECONDS", DEFAULT_CANCEL_CHECK_INTERVAL_SECONDS, 0.05, 3600.0, env
            ),
            shutdown_grace_seconds=env_float(
                "EXECUTOR_SHUTDOWN_GRACE_SECONDS", DEFAULT_SHUTDOWN_GRACE_SECONDS, 0.0, 86_400.0, env
            ),
            complete_batch_size=env_int("EXECUTOR_COMPLETE_BATCH_SIZE", DEFAULT_COMPLETE_BATCH_SIZE, 1, 100_000, env),
            complete_flush_seconds=env_float(
                "EXECUTOR_COMPLETE_FLUSH_SECONDS", DEFAULT_COMPLETE_FLUSH_SECONDS, 0.0, 10.0, env
            ),
            max_result_bytes=env_int("EXECUTOR_MAX_RESULT_BYTES", DEFAULT_MAX_RESULT_BYTES, 2, 64 * 1024 * 1024, env),
            max_abandoned_threads=env_int("EXECUTOR_MAX_ABANDONED_THREADS", concurrency, 0, MAX_CONCURRENCY, env),
            retry_backoff_base_seconds=backoff_base,
            retry_backoff_cap_seconds=backoff_cap,
            metrics_port=env_int("METRICS_PORT", DEFAULT_METRICS_PORT, 0, 65535, env),
            log_level=log_level,
            log_format=log_format,
            callback=CallbackSettings.from_env(env),
        )


def _env_list(name: str, env: Mapping[str, str] | None) -> tuple[str, ...]:
    raw = env_str(name, "", env)
    return tuple(dict.fromkeys(item.strip() for item in raw.split(",") if item.strip()))


def _env_types(name: str, env: Mapping[str, str] | None) -> tuple[str, ...]:
    types = _env_list(name, env)
    for job_type in types:
        if not TYPE_PATTERN.fullmatch(job_type):
            raise SettingsError(f"{name}: {job_type!r} is not a job type (1-128 characters of a-z 0-9 _ . -)")
    return types
