"""Domain types for jobs: statuses, the stored job, and a validated new job."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson

from shared.egress import DEFAULT_POLICY, EgressPolicy, EgressRefused, check_url
from shared.errors import InvalidArgument
from shared.structs import find_nul_character

__all__ = [
    "ACTIVE_STATUSES",
    "CALLBACK_JOB_TYPE",
    "CANCELLABLE_STATUSES",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_PRIORITY",
    "FINISHED_STATUSES",
    "RETRYABLE_STATUSES",
    "AttemptOutcome",
    "Job",
    "JobAttempt",
    "JobCounts",
    "JobCursor",
    "JobFilter",
    "JobStatus",
    "NewJob",
    "RecentFailure",
    "SubmitResult",
    "ValidatedJob",
    "check_type_name",
]

DEFAULT_PRIORITY = 5
DEFAULT_MAX_ATTEMPTS = 3
MAX_ATTEMPTS_LIMIT = 100
TYPE_PATTERN = re.compile(r"[a-z0-9_.\-]{1,128}")
IDEMPOTENCY_KEY_MAX_LENGTH = 256
CONCURRENCY_KEY_MAX_LENGTH = 256
FAIRNESS_KEY_MAX_LENGTH = 128
UNIQUE_KEY_MAX_LENGTH = 256
MAX_DEPENDENCIES = 100
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
CALLBACK_URL_MAX_LENGTH = 2048
# Job types the service submits itself; a client may not, or it could have deliveries signed for it.
CALLBACK_JOB_TYPE = "jobs.callback"
RESERVED_TYPES = frozenset({CALLBACK_JOB_TYPE})


def check_type_name(value: str, field: str = "type") -> str:
    """``value`` when it is a valid job type name; otherwise InvalidArgument naming ``field``."""
    if not value:
        raise InvalidArgument(field, "is required")
    if not TYPE_PATTERN.fullmatch(value):
        raise InvalidArgument(field, "must be 1-128 characters of a-z 0-9 _ . -")
    return value


class JobStatus(str, Enum):
    """Where a job is in its life; the names are those of the database enum and the proto."""

    WAITING = "WAITING"
    PENDING = "PENDING"
    READY = "READY"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE_STATUSES = frozenset(JobStatus) - FINISHED_STATUSES
# What CancelJob(s) and RetryJob(s) apply to, in the order the bulk actions take them.
CANCELLABLE_STATUSES = (JobStatus.WAITING, JobStatus.PENDING, JobStatus.READY, JobStatus.PROCESSING)
RETRYABLE_STATUSES = (JobStatus.FAILED, JobStatus.CANCELLED)


class AttemptOutcome(str, Enum):
    """How one attempt of a job ended (RUNNING: it has not); the names of the proto's JobAttempt.Outcome."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"
    # The executor died or stopped heartbeating, and the scheduler took the lease back.
    LOST = "LOST"


@dataclass(frozen=True)
class JobAttempt:
    """One attempt of a job, as ListJobAttempts shows it. ``attempt`` counts every attempt the job made,
    those before a RetryJob included; ``traceback`` is the failed handler's, bounded, innermost frames."""

    attempt: int
    executor_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: AttemptOutcome
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class JobFilter:
    """Which jobs ListJobs, CancelJobs and RetryJobs select: every field given must match (None: any).

    ``created_after`` is inclusive, ``created_before`` exclusive. A filter with a time bound lists its
    jobs newest first by creation time (and id), so that a page reads only its own rows of the
    created_at index; otherwise newest first by id.
    """

    status: JobStatus | None = None
    type: str | None = None
    idempotency_key: str | None = None
    unique_key: str | None = None
    concurrency_key: str | None = None
    schedule: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    fairness_key: str | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)

    @property
    def by_created_at(self) -> bool:
        """Whether pages are ordered by (created_at, job_id) rather than job_id."""
        return self.created_after is not None or self.created_before is not None

    def validate(self) -> JobFilter:
        """Raise InvalidArgument naming the first bad field; return the filter. (A NUL character in a key is
        refused before: the api checks every request string, services/api/convert.py.)"""
        for name in ("created_after", "created_before"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise InvalidArgument(name, "must carry a time zone")
        after, before = self.created_after, self.created_before
        if after is not None and before is not None and before <= after:
            raise InvalidArgument("created_before", "must be later than created_after")
        return self

    def describe(self) -> str:
        """The filter as ``name=value`` pairs, for messages."""
        parts = []
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value.value if isinstance(value, JobStatus) else value}")
        return " ".join(parts) or "(empty)"


class JobCursor(NamedTuple):
    """Where a page of a filtered list ended: its last job (and that job's created_at, which orders the
    pages of a time-filtered list)."""

    job_id: int
    created_at: datetime


@dataclass(frozen=True)
class Job:
    """One row of the jobs table, as the rest of the code sees it."""

    job_id: int
    type: str
    status: JobStatus
    priority: int
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    timeout_seconds: int
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    cancel_requested: bool = False
    idempotency_key: str | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error_message: str | None = None
    result: dict[str, Any] | None = None
    traceparent: str | None = None
    lease_owner: str | None = None
    lease_token: str | None = None
    lease_expires_at: datetime | None = None
    progress_percent: int | None = None
    progress_message: str | None = None
    progress_at: datetime | None = None
    depends_on: Sequence[int] = ()
    pending_dependencies: int = 0
    callback_url: str | None = None
    concurrency_key: str | None = None
    unique_key: str | None = None
    schedule_name: str | None = None
    fairness_key: str | None = None
    # The webhook's newest delivery job (type "jobs.callback"), and what the API's reads join from it.
    # callback_delivery_pruned: the delivery job was deleted by retention, so its outcome is unknown.
    callback_job_id: int | None = None
    callback_delivery_status: JobStatus | None = None
    callback_delivery_attempts: int = 0
    callback_delivery_error: str | None = None
    callback_delivery_finished_at: datetime | None = None
    callback_delivery_pruned: bool = False

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Job:
        """Build a Job from a result row that has (at least) the jobs table's columns."""
        return cls.from_rows(list(row.keys()), [tuple(row.values())])[0]

    @classmethod
    def from_rows(cls, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[Job]:
        """Jobs from plain row tuples with these column names; columns that are not Job fields are ignored."""
        wanted = [(index, name) for index, name in enumerate(columns) if name in _JOB_DEFAULTS]
        jobs = []
        for row in rows:
            values = dict(_JOB_DEFAULTS)
            values.update({name: row[index] for index, name in wanted})
            values["status"] = JobStatus(values["status"])
            if values["lease_token"] is not None:
                values["lease_token"] = str(values["lease_token"])
            if values["depends_on"].__class__ is list:  # bigint[] arrives as a list
                values["depends_on"] = tuple(values["depends_on"])
            if values["callback_delivery_status"] is not None:
                values["callback_delivery_status"] = JobStatus(values["callback_delivery_status"])
            if values["callback_delivery_attempts"] is None:  # no delivery job (yet, or any more)
                values["callback_delivery_attempts"] = 0
            if not values["fairness_key"]:  # stored as '' when the job has none (migration 0011)
                values["fairness_key"] = None
            # Filling __dict__ directly: a frozen dataclass's __init__ sets its ~30 fields one
            # object.__setattr__ at a time, which made building Jobs the api's largest cost on batch submits.
            job = object.__new__(cls)
            job.__dict__.update(values)
            jobs.append(job)
        return jobs

    @classmethod
    def inserted(cls, new: NewJob, job_id: int, status: str, created_at: datetime, run_at: datetime) -> Job:
        """The job a submit just stored: ``new`` as inserted, with what the database decided (its id,
        READY or PENDING, its timestamps); every other column of a new row has its default."""
        job = object.__new__(cls)
        job.__dict__.update(_JOB_DEFAULTS)
        job.__dict__.update(
            job_id=job_id,
            type=new.type,
            status=JobStatus(status),
            priority=new.priority,
            payload=new.payload,
            attempts=0,
            max_attempts=new.max_attempts,
            timeout_seconds=new.timeout_seconds,
            run_at=run_at,
            created_at=created_at,
            updated_at=created_at,
            idempotency_key=new.idempotency_key,
            scheduled_at=new.scheduled_at,
            traceparent=new.traceparent,
            callback_url=new.callback_url,
            concurrency_key=new.concurrency_key,
            unique_key=new.unique_key,
            schedule_name=new.schedule_name,
            fairness_key=new.fairness_key,
        )
        return job


# Every Job field with its default; None stands for "required" (a row must carry those columns).
_JOB_DEFAULTS: dict[str, Any] = {
    name: (None if spec.default is MISSING else spec.default) for name, spec in Job.__dataclass_fields__.items()
}


@dataclass(frozen=True)
class NewJob:
    """A job as submitted, before it has an id. ``validate`` checks every rule once."""

    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    priority: int = DEFAULT_PRIORITY
    scheduled_at: datetime | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_seconds: int | None = None
    traceparent: str | None = None
    depends_on: Sequence[int] = ()
    # SubmitJobs only: positions of earlier jobs of the same batch this one depends on.
    depends_on_index: Sequence[int] = ()
    callback_url: str | None = None
    concurrency_key: str | None = None
    unique_key: str | None = None
    # Set by the scheduler for jobs of a periodic schedule; never by a client.
    schedule_name: str | None = None
    # Jobs of one type and priority are leased round-robin across these keys (docs/fairness.md).
    fairness_key: str | None = None

    def validate(
        self, max_payload_bytes: int, batch_position: int | None = None, egress: EgressPolicy = DEFAULT_POLICY
    ) -> ValidatedJob:
        """Raise InvalidArgument naming the first bad field; return the job with its payload encoded as JSON.

        ``batch_position`` is the job's 0-based position in a SubmitJobs request (None for a unary
        submit): depends_on_index may name only earlier positions, which keeps every batch acyclic.
        ``egress`` judges a callback_url whose host is written as an address (names are judged when
        the webhook is delivered).
        """
        check_type_name(self.type)
        if self.type in RESERVED_TYPES:
            raise InvalidArgument("type", f"{self.type} is reserved for the service's own jobs")
        if not 1 <= self.priority <= 10:
            raise InvalidArgument("priority", f"must be between 1 and 10, got {self.priority}")
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise InvalidArgument(
                "max_attempts", f"must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {self.max_attempts}"
            )
        if self.timeout_seconds is not None and not 1 <= self.timeout_seconds <= MAX_TIMEOUT_SECONDS:
            raise InvalidArgument(
                "timeout_seconds", f"must be between 1 and {MAX_TIMEOUT_SECONDS}, got {self.timeout_seconds}"
            )
        if self.idempotency_key is not None and not 1 <= len(self.idempotency_key) <= IDEMPOTENCY_KEY_MAX_LENGTH:
            raise InvalidArgument("idempotency_key", f"must be 1-{IDEMPOTENCY_KEY_MAX_LENGTH} characters when given")
        if self.concurrency_key is not None and not 1 <= len(self.concurrency_key) <= CONCURRENCY_KEY_MAX_LENGTH:
            raise InvalidArgument("concurrency_key", f"must be 1-{CONCURRENCY_KEY_MAX_LENGTH} characters when given")
        if self.fairness_key is not None and not (
            1 <= len(self.fairness_key) <= FAIRNESS_KEY_MAX_LENGTH and self.fairness_key.isprintable()
        ):
            raise InvalidArgument(
                "fairness_key", f"must be 1-{FAIRNESS_KEY_MAX_LENGTH} printable characters when given"
            )
        if self.callback_url is not None:
            _check_callback_url(self.callback_url, egress)
        if self.unique_key is not None and not 1 <= len(self.unique_key) <= UNIQUE_KEY_MAX_LENGTH:
            raise InvalidArgument("unique_key", f"must be 1-{UNIQUE_KEY_MAX_LENGTH} characters when given")
        self._validate_dependencies(batch_position)
        if self.scheduled_at is not None and self.scheduled_at.tzinfo is None:
            raise InvalidArgument("scheduled_at", "must carry a time zone")
        if not isinstance(self.payload, dict):
            raise InvalidArgument("payload", "must be a JSON object")
        try:
            encoded = orjson.dumps(self.payload)
        except TypeError as exc:  # orjson.JSONEncodeError: a value JSON has no form for
            raise InvalidArgument("payload", f"is not valid JSON: {exc}") from exc
        # orjson writes NaN and infinities as null; JSON has no such numbers and jsonb refuses them.
        if b"null" in encoded and _has_non_finite_number(self.payload):
            raise InvalidArgument("payload", "is not valid JSON: NaN and infinite numbers have no JSON form")
        # A NUL is written \u0000; so is the text "\u0000" (as \\u0000): only then look closer.
        if b"\\u0000" in encoded and (where := find_nul_character(self.payload, "payload")) is not None:
            raise InvalidArgument(where, "must not contain NUL characters (PostgreSQL jsonb cannot store them)")
        if len(encoded) > max_payload_bytes:
            raise InvalidArgument("payload", f"is {len(encoded)} bytes encoded; the limit is {max_payload_bytes}")
        return ValidatedJob(self, encoded.decode())

    def _validate_dependencies(self, batch_position: int | None) -> None:
        if len(self.depends_on) + len(self.depends_on_index) > MAX_DEPENDENCIES:
            raise InvalidArgument(
                "depends_on",
                f"has {len(self.depends_on) + len(self.depends_on_index)} dependencies (depends_on and "
                f"depends_on_index together); at most {MAX_DEPENDENCIES}",
            )
        for index, job_id in enumerate(self.depends_on):
            if job_id <= 0:
                raise InvalidArgument(f"depends_on[{index}]", f"must be a job id (positive), got {job_id}")
        if self.depends_on_index and batch_position is None:
            raise InvalidArgument("depends_on_index", "is only allowed in SubmitJobs; use depends_on with job ids")
        for index, position in enumerate(self.depends_on_index):
            if batch_position is not None and not 0 <= position < batch_position:
                raise InvalidArgument(
                    f"depends_on_index[{index}]",
                    f"must name an earlier job of this request (0 to {batch_position - 1}), got {position}"
                    if batch_position
                    else f"must name an earlier job of this request, and this is the first; got {position}",
                )

    @property
    def has_dependencies(self) -> bool:
        return bool(self.depends_on or self.depends_on_index)

    @classmethod
    def of(cls, **fields: Any) -> NewJob:
        """``NewJob(**fields)`` without the frozen dataclass's ``__init__``, which sets each field with its
        own ``object.__setattr__``: the api builds one NewJob per submitted job (a quarter of the cost of
        converting one). ``type`` and ``payload`` are required."""
        unknown = fields.keys() - _NEW_JOB_FIELDS
        if unknown or "type" not in fields or "payload" not in fields:
            raise TypeError(f"NewJob.of: unknown fields {sorted(unknown)}, or type or payload missing")
        job = object.__new__(cls)
        job.__dict__.update(_NEW_JOB_DEFAULTS)
        job.__dict__.update(fields)
        return job


_NEW_JOB_FIELDS = frozenset(NewJob.__dataclass_fields__)
_NEW_JOB_DEFAULTS: dict[str, Any] = {
    name: spec.default for name, spec in NewJob.__dataclass_fields__.items() if spec.default is not MISSING
}


def _has_non_finite_number(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite_number(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite_number(item) for item in value)
    return False


def _check_callback_url(url: str, egress: EgressPolicy) -> None:
    """An absolute http(s) URL with a host that the executors can POST to, not written as an address
    the egress policy refuses; InvalidArgument if not."""
    if not url:
        raise InvalidArgument("callback_url", "must not be empty when given")
    if len(url) > CALLBACK_URL_MAX_LENGTH:
        raise InvalidArgument("callback_url", f"is {len(url)} characters; the limit is {CALLBACK_URL_MAX_LENGTH}")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise InvalidArgument("callback_url", "must not contain spaces or control characters (NUL included)")
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when not a number in 0-65535
    except ValueError as exc:
        raise InvalidArgument("callback_url", f"is not a valid URL: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidArgument("callback_url", "must be an absolute http:// or https:// URL")
    if not parts.hostname:
        raise InvalidArgument("callback_url", "must name a host")
    if port == 0:
        raise InvalidArgument("callback_url", "port 0 cannot be reached")
    try:
        check_url(url, egress)
    except EgressRefused as exc:
        raise InvalidArgument("callback_url", str(exc)) from None


class ValidatedJob(NamedTuple):
    """A NewJob that passed ``validate``, with its payload encoded as JSON: what submits store."""

    job: NewJob
    payload_json: str


@dataclass(frozen=True)
class SubmitResult:
    """A submitted job, and whether this submit created it (False: idempotent replay)."""

    job: Job
    created: bool


@dataclass(frozen=True)
class RecentFailure:
    """A job that ended FAILED, as GetStats lists the latest ones."""

    job_id: int
    type: str
    error: str
    attempts: int
    failed_at: datetime | None


@dataclass(frozen=True)
class JobCounts:
    """Jobs per status and per type, and what GetStats derives from them."""

    by_status: dict[JobStatus, int]
    by_type: dict[str, int]
    avg_attempts_for_failed_jobs: float
    recent_failures: list[RecentFailure]
