"""The client's own value types: what goes in and comes out of every call. No protobuf here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Generic, TypeVar

__all__ = [
    "FINISHED_STATUSES",
    "Callback",
    "ExecutorInfo",
    "Job",
    "JobAttempt",
    "JobDefinition",
    "JobFilter",
    "JobSpec",
    "JobStatus",
    "JobType",
    "Progress",
    "RecentFailure",
    "Schedule",
    "Stats",
    "TypeLimits",
    "isoformat",
]


class JobStatus(str, Enum):
    """Where a job is in its life. Members are strings: ``JobStatus.READY == "READY"``."""

    PENDING = "PENDING"
    """Waiting for its time: scheduled for later, or backing off before a retry."""
    READY = "READY"
    """Due; an executor may lease it."""
    PROCESSING = "PROCESSING"
    """Leased by an executor and running."""
    COMPLETED = "COMPLETED"
    """Finished successfully; ``Job.result`` holds the handler's return value."""
    FAILED = "FAILED"
    """Attempts used up (the dead-letter state); ``retry`` re-queues it."""
    CANCELLED = "CANCELLED"
    """Cancelled before it finished (or because a job it depends on failed or was cancelled)."""
    WAITING = "WAITING"
    """Waiting for the jobs it depends on to complete."""

    @property
    def finished(self) -> bool:
        """True for COMPLETED, FAILED and CANCELLED: the job will not change again (unless retried)."""
        return self in FINISHED_STATUSES

    def __str__(self) -> str:
        return self.value


FINISHED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


def isoformat(value: datetime | None) -> str | None:
    """A UTC datetime as the REST API writes it (``2026-11-28T14:30:00.123456Z``); None stays None."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.isoformat() + "Z"


@dataclass(frozen=True)
class Progress:
    """How far a running handler says it has got."""

    percent: int
    message: str
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "percent": self.percent,
            "message": self.message,
            "updated_at": isoformat(self.updated_at) if self.updated_at else None,
        }


@dataclass(frozen=True)
class Callback:
    """The completion webhook of a job and how its delivery went.

    ``state``: WAITING (the job has not finished), SENDING (queued, running or retrying), DELIVERED (the
    receiver answered 2xx) or FAILED (every attempt failed; ``last_error`` says why)."""

    url: str
    state: str
    attempts: int = 0
    last_error: str | None = None
    delivery_job_id: int | None = None
    """The delivery is itself a job, of type ``jobs.callback``."""
    delivered_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class Job:
    """A job as the service reported it. Datetimes are timezone-aware (UTC); payload and result are plain
    JSON-like dicts (integral numbers come back as ``int``)."""

    job_id: int
    type: str
    status: JobStatus
    priority: int
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    timeout_seconds: int
    created_at: datetime | None = None
    updated_at: datetime | None = None
    run_at: datetime | None = None
    """The earliest time the job may (next) run."""
    scheduled_at: datetime | None = None
    """When the submitter asked it to run (``run_at`` of the submit); None for "as soon as possible"."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    idempotency_key: str | None = None
    error_message: str | None = None
    result: dict[str, Any] | None = None
    cancel_requested: bool = False
    progress: Progress | None = None
    """The latest progress the running attempt's handler reported (None before any report)."""
    depends_on: tuple[int, ...] = ()
    """The jobs this one waits for; it is WAITING until all of them COMPLETED."""
    pending_dependencies: int = 0
    """How many of ``depends_on`` have not COMPLETED yet."""
    callback: Callback | None = None
    concurrency_key: str | None = None
    unique_key: str | None = None
    schedule: str | None = None
    """The name of the periodic schedule that submitted this job, if one did."""
    fairness_key: str | None = None
    """The key this job takes turns with other keys under (see ``submit``)."""
    """The name of the periodic schedule that submitted this job, if one did."""
    created: bool | None = field(default=None, compare=False)
    """Only on jobs returned by ``submit``/``submit_many``: True when this call created the job, False when
    an earlier submit made it (same idempotency key, or an unfinished job with the same unique key). None
    elsewhere."""

    @property
    def finished(self) -> bool:
        """True once the job is COMPLETED, FAILED or CANCELLED."""
        return self.status.finished

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the REST API's field names, status as its name, datetimes as ISO 8601 UTC strings.
        ``created`` is included only when known."""
        out = _plain(self)
        if self.created is None:
            del out["created"]
        return out


@dataclass(frozen=True)
class JobAttempt:
    """One attempt of a job: where and when it ran, and how it ended.

    ``outcome``: RUNNING, COMPLETED, FAILED (the handler raised), TIMED_OUT, CANCELLED or LOST (the executor
    died or stopped heartbeating). ``attempt`` counts every attempt the job made, those before a ``retry``
    too. ``traceback`` is the handler's formatted Python traceback for a failure (at most 16 KiB, the
    innermost frames kept)."""

    attempt: int
    outcome: str
    executor_id: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    """None while RUNNING."""
    error_type: str | None = None
    """The exception's class: ``ValueError``, ``smtplib.SMTPDataError``."""
    error_message: str | None = None
    traceback: str | None = None

    @property
    def duration(self) -> timedelta | None:
        """How long it ran (None while running)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class JobFilter:
    """Which jobs ``list``, ``cancel_jobs`` and ``retry_jobs`` select: every field given must match.

    ``status`` is a JobStatus or its name; ``created_after`` is inclusive, ``created_before`` exclusive (naive
    datetimes are UTC). With a time bound, jobs are listed newest first by creation time."""

    status: JobStatus | str | None = None
    type: str | None = None
    idempotency_key: str | None = None
    unique_key: str | None = None
    concurrency_key: str | None = None
    schedule: str | None = None
    """The name of the periodic schedule that submitted the jobs."""
    created_after: datetime | None = None
    created_before: datetime | None = None
    fairness_key: str | None = None
    """The tenant key the jobs were submitted with (``submit(..., fairness_key=...)``)."""

    @property
    def empty(self) -> bool:
        return all(getattr(self, item.name) in (None, "") for item in fields(self))

    def describe(self) -> str:
        """``name=value`` for each field given (what a confirmation prompt shows)."""
        return " ".join(f"{name}={value}" for name, value in _plain(self).items() if value not in (None, ""))


def _plain(value: Any) -> Any:
    """A dataclass, enum, datetime or tuple as JSON-ready plain values."""
    if isinstance(value, datetime):
        return isoformat(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return {item.name: _plain(getattr(value, item.name)) for item in fields(value)}
    return value


P = TypeVar("P")


@dataclass(frozen=True)
class JobDefinition(Generic[P]):
    """A job type declared with its payload type, so that producers and handlers share one contract::

        send_email = JobDefinition("send_email", SendEmail)  # SendEmail: a pydantic model or a dataclass
        client.submit(send_email, SendEmail(to="a@example.com", subject="Hi"))     # a producer
        @handler(send_email)                                 # a handler (services.executor): it receives
        def send(payload: SendEmail, ctx: JobContext): ...   # the payload validated into SendEmail

    ``submit``, ``JobSpec`` (``submit_many``), ``@handler`` and ``run_handler`` take one where they take a
    job type's name. ``submit`` refuses a payload of another class (a dict is sent as it is: the executor
    validates it). Not to be confused with ``JobType``, what ``list_types`` reports about a type.
    """

    name: str
    payload_type: type[P] | None = None


@dataclass(frozen=True)
class JobSpec:
    """One job for ``submit_many`` (a dict with these keys works too). Fields as in ``submit``."""

    type: str | JobDefinition[Any]
    payload: Mapping[str, Any] | object = field(default_factory=dict)
    idempotency_key: str | None = None
    priority: int | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    timeout: float | timedelta | None = None
    depends_on: Sequence[int] = ()
    """Ids of jobs that must COMPLETE first (see ``submit``)."""
    depends_on_index: Sequence[int] = ()
    """``submit_many`` only: positions of earlier jobs in the same call that this one depends on."""
    callback_url: str | None = None
    concurrency_key: str | None = None
    unique_key: str | None = None
    fairness_key: str | None = None

    @classmethod
    def coerce(cls, value: JobSpec | Mapping[str, Any], index: int = 0) -> JobSpec:
        """``value`` itself, or a JobSpec built from a dict with the same keys (TypeError names the bad key)."""
        if isinstance(value, JobSpec):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"jobs[{index}] must be a JobSpec or a dict, not {type(value).__name__}")
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise TypeError(f"jobs[{index}] has unknown keys {unknown}; known keys: {sorted(known)}")
        if "type" not in value:
            raise TypeError(f"jobs[{index}] has no 'type'")
        return cls(**value)


@dataclass(frozen=True)
class RecentFailure:
    """One of the latest FAILED jobs, as ``stats`` lists them."""

    job_id: int
    type: str
    error: str
    attempts: int
    failed_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "type": self.type,
            "error": self.error,
            "attempts": self.attempts,
            "failed_at": isoformat(self.failed_at),
        }


@dataclass(frozen=True)
class Stats:
    """Counts by status (every status present) and by type, and the latest failures (newest first)."""

    status_breakdown: dict[str, int]
    type_breakdown: dict[str, int]
    avg_attempts_for_failed_jobs: float
    recent_failures: tuple[RecentFailure, ...] = ()

    @property
    def total(self) -> int:
        """Jobs in the table, all statuses."""
        return sum(self.status_breakdown.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "status_breakdown": dict(self.status_breakdown),
            "type_breakdown": dict(self.type_breakdown),
            "avg_attempts_for_failed_jobs": self.avg_attempts_for_failed_jobs,
            "recent_failures": [failure.to_dict() for failure in self.recent_failures],
        }


@dataclass(frozen=True)
class TypeLimits:
    """Limits of one job type, enforced across all executors; None means no limit on that dimension."""

    type: str
    max_running: int | None = None
    """At most this many PROCESSING at once."""
    max_running_per_key: int | None = None
    """At most this many PROCESSING at once per ``concurrency_key``."""
    rate_limit: int | None = None
    """At most this many attempts started in any window of ``rate_period_seconds``."""
    rate_period_seconds: int | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class Schedule:
    """A periodic schedule: at each occurrence of ``cron`` (read in ``time_zone``) the scheduler submits
    ``job``. Runs missed while no scheduler ran collapse into one, for the latest missed occurrence."""

    name: str
    cron: str
    job: JobSpec
    time_zone: str = "UTC"
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_job_id: int | None = None
    created_at: datetime | None = None
    paused: bool = False
    """A paused schedule submits nothing (``pause_schedule``)."""
    paused_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _plain(self)
        out["job"] = {key: value for key, value in out["job"].items() if value not in (None, [], ())}
        return out


@dataclass(frozen=True)
class JobType:
    """A job type as operators see it: jobs per status (statuses without jobs left out), its limits (None
    when it has none) and whether it is paused (no executor starts a new attempt of it)."""

    type: str
    counts: dict[str, int]
    limits: TypeLimits | None = None
    paused: bool = False
    paused_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class ExecutorInfo:
    """One live executor process, as it registered itself and its last heartbeat left it."""

    executor_id: str
    """hostname-pid-random; also the lease owner of the jobs it runs."""
    host: str
    pid: int
    version: str
    types: tuple[str, ...]
    concurrency: int
    running: int
    """Jobs it was running at its last heartbeat."""
    started_at: datetime | None = None
    last_seen_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)
