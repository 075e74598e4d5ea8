"""A Python client of the job service (``jobs.v1.JobService`` over gRPC), and the ``jobctl`` command line.

    from jobclient import JobClient

    with JobClient("localhost:50051", token="...") as client:
        job = client.submit("send_email", {"to": "user@example.com"}, priority=2)
        done = client.wait(job.job_id, timeout=60)
        print(done.status, done.result)

Plain dicts, dataclasses and datetimes in and out; errors are the exceptions of ``jobclient.errors``.
Calls that fail with UNAVAILABLE or DEADLINE_EXCEEDED are retried with backoff (``RetryPolicy``), and a
submit without an idempotency key gets a generated one, so a retried submit never makes a second job.
``AsyncJobClient`` offers the same calls for asyncio. See docs/client.md.
"""

__version__ = "0.1.0"

from jobclient.aio import AsyncJobClient
from jobclient.client import JobClient
from jobclient.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    IdempotencyConflict,
    InvalidArgument,
    JobClientError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServerError,
    Unauthenticated,
    Unavailable,
    WaitTimeout,
)
from jobclient.models import (
    FINISHED_STATUSES,
    Callback,
    ExecutorInfo,
    Job,
    JobAttempt,
    JobDefinition,
    JobFilter,
    JobSpec,
    JobStatus,
    JobType,
    RecentFailure,
    Schedule,
    Stats,
    TypeLimits,
)
from jobclient.retry import DEFAULT_RETRY, NO_RETRY, RetryPolicy

__all__ = [
    "DEFAULT_RETRY",
    "FINISHED_STATUSES",
    "NO_RETRY",
    "AlreadyExists",
    "AsyncJobClient",
    "Callback",
    "Cancelled",
    "DeadlineExceeded",
    "ExecutorInfo",
    "FailedPrecondition",
    "FieldViolation",
    "IdempotencyConflict",
    "InvalidArgument",
    "Job",
    "JobAttempt",
    "JobClient",
    "JobClientError",
    "JobDefinition",
    "JobFilter",
    "JobSpec",
    "JobStatus",
    "JobType",
    "NotFound",
    "PermissionDenied",
    "RecentFailure",
    "ResourceExhausted",
    "RetryPolicy",
    "Schedule",
    "ServerError",
    "Stats",
    "TypeLimits",
    "Unauthenticated",
    "Unavailable",
    "WaitTimeout",
]
