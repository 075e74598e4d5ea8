"""The service's one exception tree. Domain code raises these; only the API maps them to
gRPC and HTTP codes (services/api/errors.py holds that one table).

    JobServiceError
    ├── InvalidArgument          a request field is wrong; names the field
    ├── JobNotFound              no job with that id
    ├── TypeLimitsNotFound       the job type has no limits
    ├── IdempotencyConflict      the key is taken by a job with another type or payload
    ├── FailedPrecondition       the job is not in a state that allows the operation
    ├── ScheduleNotFound         no schedule with that name
    ├── ScheduleAlreadyExists    a schedule with that name exists already
    ├── DatabaseUnavailable      PostgreSQL cannot be reached right now; retry later
    ├── SchemaOutOfDate          the database schema is behind the code; run `jobservice migrate`
    ├── Unauthenticated          no valid bearer token
    ├── PermissionDenied         the token's role may not make this call; names the role needed
    └── TooManyRequests          a rate limit refused the call; says when to try again
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DatabaseUnavailable",
    "FailedPrecondition",
    "IdempotencyConflict",
    "InvalidArgument",
    "JobNotFound",
    "JobServiceError",
    "PermissionDenied",
    "ScheduleAlreadyExists",
    "ScheduleNotFound",
    "SchemaOutOfDate",
    "TooManyRequests",
    "TypeLimitsNotFound",
    "Unauthenticated",
]


class JobServiceError(Exception):
    """Base class of every error the service raises on purpose."""

    reason = "JOB_SERVICE_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(JobServiceError):
    """A request field has a bad value; ``field`` names it (dotted path, e.g. ``jobs[3].priority``)."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.description = message

    def within(self, prefix: str) -> InvalidArgument:
        """The same error for a field nested under ``prefix``."""
        return InvalidArgument(f"{prefix}.{self.field}", self.description)


class JobNotFound(JobServiceError):
    reason = "JOB_NOT_FOUND"

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class TypeLimitsNotFound(JobServiceError):
    reason = "TYPE_LIMITS_NOT_FOUND"

    def __init__(self, job_type: str) -> None:
        super().__init__(f"job type {job_type!r} has no limits")
        self.job_type = job_type


class IdempotencyConflict(JobServiceError):
    reason = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self, key: str, job_id: int) -> None:
        super().__init__(f"idempotency_key {key!r} already belongs to job {job_id} with a different type or payload")
        self.key = key
        self.job_id = job_id


class FailedPrecondition(JobServiceError):
    reason = "FAILED_PRECONDITION"


class ScheduleNotFound(JobServiceError):
    reason = "SCHEDULE_NOT_FOUND"

    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} not found")
        self.name = name


class ScheduleAlreadyExists(JobServiceError):
    reason = "SCHEDULE_ALREADY_EXISTS"

    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} already exists; delete it first to replace it")
        self.name = name


class DatabaseUnavailable(JobServiceError):
    reason = "DATABASE_UNAVAILABLE"


class SchemaOutOfDate(JobServiceError):
    reason = "SCHEMA_OUT_OF_DATE"


class Unauthenticated(JobServiceError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(JobServiceError):
    """The caller is known, but its role may not make the call; ``needed`` names the role that may, and
    ``caller`` is who was refused (for the api's change log)."""

    reason = "PERMISSION_DENIED"

    def __init__(self, message: str, needed: str | None, caller: Any = None) -> None:
        super().__init__(message)
        self.needed = needed
        self.caller = caller


class TooManyRequests(JobServiceError):
    """A rate limit refused the call; ``retry_after_seconds`` says when one may succeed again."""

    reason = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
