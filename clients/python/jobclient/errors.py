"""The client's exception tree, and the one table from gRPC status codes to it.

    JobClientError                      every error the client raises on purpose
    ├── InvalidArgument                 a request field is wrong; ``.field`` names it
    ├── NotFound                        no job with that id
    ├── AlreadyExists
    │   └── IdempotencyConflict         the idempotency key belongs to a job with another type or payload
    ├── FailedPrecondition              the job's state does not allow it (cancel a finished job...)
    ├── Unauthenticated                 no token, or a token the server does not accept
    ├── PermissionDenied
    ├── ResourceExhausted               a message too large, or the server is shedding load
    ├── Unavailable                     the server cannot be reached (or its database); retried for you
    ├── DeadlineExceeded                a call took longer than its deadline; retried for you
    ├── Cancelled                       the call was cancelled
    ├── ServerError                     INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS...
    └── WaitTimeout                     ``wait``/``watch`` ran out of time before the job finished

``DeadlineExceeded`` and ``WaitTimeout`` are also ``TimeoutError``s; ``Unavailable`` is also a
``ConnectionError``. The server's rich status (google.rpc ErrorInfo, BadRequest) is read for ``reason``
and ``field``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.rpc import error_details_pb2, status_pb2

if TYPE_CHECKING:
    from jobclient.models import Job

__all__ = [
    "RETRYABLE_CODES",
    "AlreadyExists",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "IdempotencyConflict",
    "InvalidArgument",
    "JobClientError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "ServerError",
    "Unauthenticated",
    "Unavailable",
    "WaitTimeout",
    "error_from_rpc",
]

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request, as the server's BadRequest detail names it."""

    field: str
    description: str


class JobClientError(Exception):
    """Base of every error the client raises on purpose.

    ``code`` is the gRPC status name (``"NOT_FOUND"``...), or None for errors found before any call was
    made; ``reason`` the server's ErrorInfo reason (``"JOB_NOT_FOUND"``...) when it gave one; ``attempts``
    how many times the call was tried (more than 1 when it was retried).
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        reason: str | None = None,
        violations: tuple[FieldViolation, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.violations = violations
        self.attempts = 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, reason={self.reason!r})"


class InvalidArgument(JobClientError, ValueError):
    """A request field has a bad value. ``field`` names it (``"priority"``, ``"jobs[3].payload"``), from the
    server's BadRequest detail when present; ``description`` says what is wrong with it."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = "INVALID_ARGUMENT",
        reason: str | None = None,
        violations: tuple[FieldViolation, ...] = (),
        field: str | None = None,
    ) -> None:
        if field is not None and not violations:
            violations = (FieldViolation(field, message),)
        super().__init__(message, code=code, reason=reason, violations=violations)

    @property
    def field(self) -> str | None:
        """The first bad field, or None when the server named none."""
        return self.violations[0].field if self.violations else None

    @property
    def description(self) -> str:
        return self.violations[0].description if self.violations else self.message


class NotFound(JobClientError, LookupError):
    """No job with that id."""


class AlreadyExists(JobClientError):
    """The thing being created exists already, differently."""


class IdempotencyConflict(AlreadyExists):
    """The idempotency key is taken by a job with a different type or payload (nothing was stored)."""


class FailedPrecondition(JobClientError):
    """The job is not in a state that allows the operation (e.g. cancel of a COMPLETED job)."""


class Unauthenticated(JobClientError):
    """The server wants ``authorization: Bearer <token>`` and got no token or a wrong one."""


class PermissionDenied(JobClientError):
    """The token is valid but may not do this."""


class ResourceExhausted(JobClientError):
    """A message over the size limit, or the server shedding load."""


class Unavailable(JobClientError, ConnectionError):
    """The server (or its database) cannot be reached right now. Raised after the retries ran out."""

    retryable = True


class DeadlineExceeded(JobClientError, TimeoutError):
    """A call took longer than its deadline. Raised after the retries ran out."""

    retryable = True


class Cancelled(JobClientError):
    """The call was cancelled before it finished."""


class ServerError(JobClientError):
    """The server failed in a way the client cannot fix (INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS...)."""


class WaitTimeout(JobClientError, TimeoutError):
    """``wait`` or ``watch`` ran out of time before the job finished. ``job`` is the last state seen
    (None if none arrived)."""

    def __init__(self, job_id: int, timeout: float, job: Job | None = None) -> None:
        status = f" (last seen {job.status.value})" if job is not None else ""
        super().__init__(f"job {job_id} did not finish within {timeout:g}s{status}", code="DEADLINE_EXCEEDED")
        self.job_id = job_id
        self.job = job


# The one table: gRPC status code -> exception class. Codes not listed become ServerError.
CODE_TO_ERROR: dict[grpc.StatusCode, type[JobClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.INTERNAL: ServerError,
    grpc.StatusCode.UNKNOWN: ServerError,
    grpc.StatusCode.UNIMPLEMENTED: ServerError,
    grpc.StatusCode.DATA_LOSS: ServerError,
}

# Refinements by the server's ErrorInfo reason (services/api/errors.py, shared/errors.py).
REASON_TO_ERROR: dict[str, type[JobClientError]] = {
    "IDEMPOTENCY_KEY_REUSED": IdempotencyConflict,
}

RETRYABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


def _rich_details(trailing_metadata: Any) -> tuple[str | None, tuple[FieldViolation, ...]]:
    """ErrorInfo reason and BadRequest violations from the status details the server attached, if any."""
    reason: str | None = None
    violations: list[FieldViolation] = []
    for key, value in trailing_metadata or ():
        if key != _STATUS_DETAILS_KEY:
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:  # a malformed detail must not hide the error itself
            continue
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = reason or info.reason or None
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return reason, tuple(violations)


def error_from_rpc(error: grpc.RpcError) -> JobClientError:
    """The client exception for a failed call (sync ``grpc.RpcError`` or ``grpc.aio.AioRpcError``)."""
    code_method = getattr(error, "code", None)
    code = code_method() if callable(code_method) else grpc.StatusCode.UNKNOWN
    details_method = getattr(error, "details", None)
    message = (details_method() if callable(details_method) else None) or str(error) or code.name
    trailing_method = getattr(error, "trailing_metadata", None)
    trailing = trailing_method() if callable(trailing_method) else None
    reason, violations = _rich_details(trailing)
    cls = REASON_TO_ERROR.get(reason or "") or CODE_TO_ERROR.get(code, ServerError)
    name = code.name if isinstance(code, grpc.StatusCode) else str(code)
    return cls(message, code=name, reason=reason, violations=violations)
