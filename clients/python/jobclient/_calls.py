"""What each call of the client does, written once for JobClient and AsyncJobClient.

A call is a generator function here: it builds its requests, yields the I/O it needs as *operations*, and
turns the replies into the client's types. It never touches a channel or a clock's sleep itself (the
sans-I/O pattern of h11, and of httpx's shared models). A client drives the generator with ``Run``, doing
each operation with its own transport: the blocking stubs and ``time.sleep`` in JobClient, the grpc.aio
stubs and ``asyncio.sleep`` in AsyncJobClient. A failed RPC comes back into the generator as the
JobClientError it maps to (errors.py), so retries and the recoveries below are written once:

    Unary(method, request, timeout)       one try of a unary RPC          -> its response
    OpenStream(method, request, timeout)  start a server-streaming RPC    -> a stream handle
    ReadStream(stream)                    the stream's next message       -> the message, None at its end
    Sleep(seconds)                        back off before a retry         -> None
    Emit(value)                           an item of list/watch for the caller

Adding a call: a generator function here, then one line in each client (``name = blocking(_calls.name)``
in client.py, ``name = awaitable(_calls.name)`` in aio.py); its docstring is the method's.
"""

from __future__ import annotations

import builtins
import inspect
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import grpc

from jobclient._convert import (
    attempt_from_proto,
    bulk_filter,
    executor_from_proto,
    job_from_proto,
    job_type_from_proto,
    limits_from_proto,
    limits_request,
    list_request,
    same_version,
    schedule_from_proto,
    schedule_request,
    schedule_update_request,
    stats_from_proto,
    submit_request,
)
from jobclient._proto.jobs.v1 import job_service_pb2 as pb
from jobclient.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    JobClientError,
    NotFound,
    Unavailable,
    WaitTimeout,
    error_from_rpc,
)
from jobclient.models import (
    ExecutorInfo,
    Job,
    JobAttempt,
    JobDefinition,
    JobFilter,
    JobSpec,
    JobStatus,
    JobType,
    Schedule,
    Stats,
    TypeLimits,
)
from jobclient.retry import NO_RETRY, RetryPolicy, RetryState

__all__ = [
    "DEFAULT_BULK_DEADLINE",
    "DEFAULT_PAGE_SIZE",
    "CallOptions",
    "Emit",
    "OpenStream",
    "ReadStream",
    "Run",
    "Sleep",
    "Unary",
]

T = TypeVar("T")
R = TypeVar("R")
DEFAULT_PAGE_SIZE = 100
# Seconds one try of cancel_jobs or retry_jobs may take: the server's BULK_REQUEST_TIMEOUT_SECONDS default.
DEFAULT_BULK_DEADLINE = 600.0
# A watch whose own deadline fires this close to the caller's timeout has run out of time.
_TIMEOUT_SLACK = 0.25


# -- operations --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unary:
    """One try of a unary RPC of JobService (``method`` is its name, e.g. ``"GetJob"``)."""

    method: str
    request: Any
    timeout: float | None


@dataclass(frozen=True)
class OpenStream:
    """Start a server-streaming RPC; the outcome is a handle for ReadStream."""

    method: str
    request: Any
    timeout: float | None


@dataclass(frozen=True)
class ReadStream:
    """The next message of an open stream; None when the server ended it."""

    stream: Any


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Emit(Generic[T]):
    """One item for the caller of an iterating call (``list``, ``watch``)."""

    value: T


Operation = Unary | OpenStream | ReadStream | Sleep
# What a call yields: operations, and for iterating calls the items too.
Call = Generator[Operation | Emit[T], Any, R]


@dataclass(frozen=True)
class CallOptions:
    """What every call of one client shares: the deadline of each try (``bulk_deadline`` for CancelJobs
    and RetryJobs), and the retry policy."""

    deadline: float | None
    retry: RetryPolicy
    bulk_deadline: float | None = DEFAULT_BULK_DEADLINE


class Run(Generic[T, R]):
    """One call being driven by a client. Iterate it for the operations (and Emits) in turn; report the
    outcome of each operation with ``succeeded`` or ``failed`` before taking the next. ``result`` holds the
    call's return value once the iteration ends; ``close`` ends it early and cancels the streams it opened.
    """

    def __init__(self, call: Call[T, R]) -> None:
        self._call = call
        self._last: Operation | Emit[T] | None = None
        self._outcome: Any = None
        self._error: JobClientError | None = None
        self._streams: builtins.list[Any] = []
        self.result: R

    def __iter__(self) -> Run[T, R]:
        return self

    def __next__(self) -> Operation | Emit[T]:
        outcome, error = self._outcome, self._error
        self._outcome = self._error = None
        try:
            self._last = self._call.throw(error) if error is not None else self._call.send(outcome)
        except StopIteration as stop:
            self.result = stop.value
            raise StopIteration from None
        return self._last

    def succeeded(self, outcome: Any) -> None:
        if isinstance(self._last, OpenStream):
            self._streams.append(outcome)
        self._outcome = outcome

    def failed(self, error: grpc.RpcError) -> None:
        self._error = error_from_rpc(error)

    def close(self) -> None:
        for stream in self._streams:
            stream.cancel()
        self._call.close()


def method_signature(call: Callable[..., Any], method: Callable[..., Any]) -> None:
    """Give a client's method the call's name, docstring and signature (``self`` for ``options``)."""
    signature = inspect.signature(call)
    options, *parameters = signature.parameters.values()
    method.__name__ = method.__qualname__ = call.__name__
    method.__doc__ = call.__doc__
    self = options.replace(name="self", annotation=inspect.Parameter.empty)
    # The return annotation is the generator's; the docstring says what the method gives back.
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self, *parameters], return_annotation=inspect.Signature.empty
    )


# -- building blocks ---------------------------------------------------------------------------------------


def unary(
    options: CallOptions, method: str, request: Any, bulk: bool = False, retry: RetryPolicy | None = None
) -> Generator[Operation, Any, Any]:
    """One unary RPC, retried by ``retry`` (the client's policy unless given); the error raised records how
    many tries were made. ``bulk``: a CancelJobs or RetryJobs call, whose tries may each last
    ``bulk_deadline``."""
    policy = retry or options.retry
    state = (
        RetryState(policy.lasting(options.bulk_deadline), options.bulk_deadline)
        if bulk
        else RetryState(policy, options.deadline)
    )
    while True:
        try:
            return (yield Unary(method, request, state.attempt_timeout()))
        except JobClientError as error:
            error.attempts = state.attempt
            delay = state.delay_before_retry(error)
            if delay is None:
                raise
        yield Sleep(delay)


def change_job(options: CallOptions, method: str, request: Any, done: Callable[[Job], bool]) -> Call[Any, Job]:
    """A unary call that changes one job. When a retry of it is refused with FailedPrecondition, our
    earlier try may have done it and lost its answer: the job is returned if ``done(job)`` says so."""
    try:
        return job_from_proto((yield from unary(options, method, request)))
    except FailedPrecondition as error:
        if error.attempts > 1:
            job = yield from get(options, request.job_id)
            if done(job):
                return job
        raise


def delete(options: CallOptions, method: str, request: Any) -> Call[Any, None]:
    """A unary delete. A retry finding nothing to delete means our earlier try deleted it."""
    try:
        yield from unary(options, method, request)
    except NotFound as error:
        if error.attempts <= 1:
            raise


# -- the calls ---------------------------------------------------------------------------------------------


def submit(
    options: CallOptions,
    type: str | JobDefinition[Any],
    payload: Mapping[str, Any] | object | None = None,
    *,
    idempotency_key: str | None = None,
    priority: int | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    timeout: float | timedelta | None = None,
    depends_on: Sequence[int] = (),
    callback_url: str | None = None,
    concurrency_key: str | None = None,
    unique_key: str | None = None,
    fairness_key: str | None = None,
) -> Call[Any, Job]:
    """Submit one job and return it (``job.created`` tells a new job from an existing one).

    Args:
        type: the handler name, 1-128 characters of ``a-z 0-9 _ . -``, or a ``JobDefinition``.
        payload: a JSON-like dict handed to the handler (default ``{}``), or a pydantic model or a
            dataclass instance, sent as its JSON (``model_dump(mode="json")``, ``dataclasses.asdict``).
        idempotency_key: one key, one job: submitting it again with the same type and payload returns
            the existing job; with another type or payload raises IdempotencyConflict. When None, a
            random key is generated so that the client's own retries cannot create a second job.
        priority: 1 (highest) to 10 (lowest); the server's default (5) when None.
        run_at: run no earlier than this (a naive datetime is UTC); now when None.
        max_attempts: 1-100; the server's default (3) when None.
        timeout: seconds (or a timedelta; rounded up to whole seconds) one attempt may run.
        depends_on: ids of jobs that must COMPLETE first; the job is WAITING until then, and CANCELLED
            when one of them FAILED or was cancelled (``submit_many`` also takes ``depends_on_index``).
        callback_url: an http(s) URL the finished job is POSTed to (see ``Job.callback``).
        concurrency_key: the key per-key concurrency limits of the type count by (``set_limits``).
        unique_key: while an unfinished job has this key, return that job instead of making one.
        fairness_key: fair share, e.g. a tenant id (1-128 printable characters): within a type and
            priority, READY jobs are leased round-robin across the keys that have READY jobs, so one
            key's backlog cannot hold back another key's jobs.

    Raises:
        InvalidArgument: a bad field (``.field`` names it); IdempotencyConflict; Unauthenticated;
        Unavailable / DeadlineExceeded once the retries ran out.
    """
    spec = JobSpec(
        type,
        payload if payload is not None else {},
        idempotency_key=idempotency_key,
        priority=priority,
        run_at=run_at,
        max_attempts=max_attempts,
        timeout=timeout,
        depends_on=tuple(depends_on),
        callback_url=callback_url,
        concurrency_key=concurrency_key,
        unique_key=unique_key,
        fairness_key=fairness_key,
    )
    reply = yield from unary(options, "SubmitJob", submit_request(spec))
    return job_from_proto(reply.job, created=reply.created)


def submit_many(options: CallOptions, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> Call[Any, builtins.list[Job]]:
    """Submit several jobs in one call and one transaction (at most the server's MAX_BATCH_SIZE, 1000 by
    default). All are valid or none is stored; an InvalidArgument names the field as ``jobs[i].field``.
    Jobs without an idempotency key get a generated one. Returns the jobs in the order given."""
    specs = [JobSpec.coerce(job, i) for i, job in enumerate(jobs)]
    request = pb.SubmitJobsRequest(jobs=[submit_request(spec, f"jobs[{i}].") for i, spec in enumerate(specs)])
    reply = yield from unary(options, "SubmitJobs", request)
    return [job_from_proto(result.job, created=result.created) for result in reply.results]


def get(options: CallOptions, job_id: int) -> Call[Any, Job]:
    """The job now. Raises NotFound for an unknown id."""
    return job_from_proto((yield from unary(options, "GetJob", pb.GetJobRequest(job_id=job_id))))


def list(
    options: CallOptions,
    *,
    status: JobStatus | str | None = None,
    type: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    idempotency_key: str | None = None,
    unique_key: str | None = None,
    concurrency_key: str | None = None,
    schedule: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    fairness_key: str | None = None,
) -> Call[Job, None]:
    """Every job matching the filters, newest first, fetched a page at a time as the iteration advances.

    Every filter given must match (see ``JobFilter``): ``status`` is a JobStatus or its name, ``type``
    an exact job type, the keys (``fairness_key`` too: a tenant's jobs) exact keys, ``schedule`` the name
    of the schedule that submitted the jobs; ``created_after`` (inclusive) and ``created_before``
    (exclusive) bound the creation time, and then the jobs come newest first by creation time.
    ``page_size`` 1-500. Stop early with ``break`` (or ``itertools.islice(client.list(), 20)``).
    """
    filter = JobFilter(
        status,
        type,
        idempotency_key,
        unique_key,
        concurrency_key,
        schedule,
        created_after,
        created_before,
        fairness_key,
    )
    token = ""
    while True:
        page = yield from unary(options, "ListJobs", list_request(filter, page_size, token))
        for message in page.jobs:
            yield Emit(job_from_proto(message))
        token = page.next_page_token
        if not token:
            return


def attempts(options: CallOptions, job_id: int) -> Call[Any, builtins.list[JobAttempt]]:
    """Every attempt of the job, oldest first (a running one last): its executor, start and end, outcome
    and, for a failure, the error and its traceback. Raises NotFound for an unknown job."""
    reply = yield from unary(options, "ListJobAttempts", pb.ListJobAttemptsRequest(job_id=job_id))
    return [attempt_from_proto(item) for item in reply.attempts]


def cancel_jobs(options: CallOptions, filter: JobFilter, *, validate_only: bool = False) -> Call[Any, int]:
    """Cancel every job ``filter`` selects, as ``cancel`` does (WAITING, PENDING and READY ones at once,
    PROCESSING ones through their executor); returns how many. The server works through them in short
    transactions and answers when all are done: the call may take a while (up to ``bulk_deadline``).
    Safe to repeat, and retried after a timeout; the count is then the last try's.
    ``validate_only``: count the jobs it would cancel and change nothing. An empty filter raises
    InvalidArgument."""
    request = pb.CancelJobsRequest(filter=bulk_filter(filter), validate_only=validate_only)
    return int((yield from unary(options, "CancelJobs", request, bulk=True)).count)


def retry_jobs(options: CallOptions, filter: JobFilter, *, validate_only: bool = False) -> Call[Any, int]:
    """Re-queue every FAILED or CANCELLED job ``filter`` selects, as ``retry`` does; returns how many.
    Otherwise as ``cancel_jobs``."""
    request = pb.RetryJobsRequest(filter=bulk_filter(filter), validate_only=validate_only)
    return int((yield from unary(options, "RetryJobs", request, bulk=True)).count)


def cancel(options: CallOptions, job_id: int) -> Call[Any, Job]:
    """Cancel a job: PENDING or READY ones become CANCELLED at once; for a PROCESSING one the request is
    recorded (``cancel_requested``) and its executor stops it. Raises FailedPrecondition for a finished
    job, NotFound for an unknown one."""
    request = pb.CancelJobRequest(job_id=job_id)
    return (yield from change_job(options, "CancelJob", request, lambda job: job.status is JobStatus.CANCELLED))


def retry(options: CallOptions, job_id: int) -> Call[Any, Job]:
    """Re-queue a FAILED or CANCELLED job as a fresh READY job (attempts from zero). Raises
    FailedPrecondition for a job in any other state, NotFound for an unknown one."""
    request = pb.RetryJobRequest(job_id=job_id)
    return (yield from change_job(options, "RetryJob", request, lambda job: not _retryable(job)))


def _retryable(job: Job) -> bool:
    return job.status in (JobStatus.FAILED, JobStatus.CANCELLED)


def stats(options: CallOptions) -> Call[Any, Stats]:
    """Counts by status and type, the average attempts of failed jobs, and the latest failures."""
    return stats_from_proto((yield from unary(options, "GetStats", pb.GetStatsRequest())))


def watch(
    options: CallOptions, job_id: int, timeout: float | None = None, *, retry: RetryPolicy | None = None
) -> Call[Job, None]:
    """The job now, then again after every change, ending after it is COMPLETED, FAILED or CANCELLED.

    A dropped stream is reopened (with the retry policy's backoff) and repeats nothing already seen.
    ``timeout`` bounds the whole watch: WaitTimeout when the job has not finished by then. Breaking
    out of the loop cancels the stream. ``retry`` replaces the client's policy for reopening the stream
    (its count and time limits apply to consecutive failures; an update resets them).
    """
    yield from _follow(options, job_id, timeout, retry, emit=True)


def wait(
    options: CallOptions, job_id: int, timeout: float | None = None, *, retry: RetryPolicy | None = None
) -> Call[Any, Job]:
    """The job once it is COMPLETED, FAILED or CANCELLED (check ``job.status``). Raises WaitTimeout after
    ``timeout`` seconds; ``retry`` as in ``watch``."""
    return (yield from _follow(options, job_id, timeout, retry, emit=False))


def _follow(
    options: CallOptions, job_id: int, timeout: float | None, retry: RetryPolicy | None, emit: bool
) -> Call[Job, Job]:
    """WatchJob until the job finishes, reopening dropped streams; emits each new version when ``emit``,
    and returns the finished job."""
    ends = None if timeout is None else time.monotonic() + timeout
    state = RetryState(retry or options.retry, None)
    last: Job | None = None
    request = pb.WatchJobRequest(job_id=job_id)
    while True:
        remaining = None if ends is None else ends - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise WaitTimeout(job_id, timeout or 0, last)
        state.attempt += 1
        try:
            stream = yield OpenStream("WatchJob", request, remaining)
            while (message := (yield ReadStream(stream))) is not None:
                state.reset()
                job = job_from_proto(message)
                if last is not None and same_version(last, job):
                    continue
                last = job
                if emit:
                    yield Emit(job)
                if job.finished:
                    return job
            # The stream ended before the job finished (the api shutting down): open it again.
            error: JobClientError = Unavailable("the watch stream ended before the job finished", code="UNAVAILABLE")
        except JobClientError as failure:
            error = failure
            if ends is not None and isinstance(error, DeadlineExceeded) and ends - time.monotonic() < _TIMEOUT_SLACK:
                raise WaitTimeout(job_id, timeout or 0, last) from None
        delay = state.delay_before_retry(error)
        if delay is None:
            raise error
        yield Sleep(delay)


def set_limits(
    options: CallOptions,
    type: str,
    *,
    max_running: int | None = None,
    max_running_per_key: int | None = None,
    rate_limit: int | None = None,
    rate_period_seconds: int | None = None,
) -> Call[Any, TypeLimits]:
    """Replace the limits of one job type (None: no limit on that dimension); enforced across all
    executors. ``rate_limit`` attempts may start in any window of ``rate_period_seconds`` (default 60)."""
    limits = TypeLimits(type, max_running, max_running_per_key, rate_limit, rate_period_seconds)
    return limits_from_proto((yield from unary(options, "SetTypeLimits", limits_request(limits))))


def list_limits(options: CallOptions) -> Call[Any, builtins.list[TypeLimits]]:
    """The limits of every job type that has any, by type."""
    reply = yield from unary(options, "ListTypeLimits", pb.ListTypeLimitsRequest())
    return [limits_from_proto(item) for item in reply.limits]


def delete_limits(options: CallOptions, type: str) -> Call[Any, None]:
    """Remove every limit of a job type. Raises NotFound when it has none."""
    yield from delete(options, "DeleteTypeLimits", pb.DeleteTypeLimitsRequest(type=type))


def create_schedule(
    options: CallOptions, name: str, cron: str, job: JobSpec | Mapping[str, Any], *, time_zone: str = "UTC"
) -> Call[Any, Schedule]:
    """Create a periodic schedule: at each occurrence of the five-field ``cron`` expression, read in
    ``time_zone``, the scheduler submits ``job`` (a JobSpec or dict without run_at, idempotency_key or
    dependencies). Raises AlreadyExists when the name is taken."""
    schedule = Schedule(name, cron, JobSpec.coerce(job), time_zone)
    try:
        return schedule_from_proto((yield from unary(options, "CreateSchedule", schedule_request(schedule))))
    except AlreadyExists as error:
        if error.attempts > 1:  # a retried create finding the schedule: our earlier try made it
            return (yield from get_schedule(options, name))
        raise


def get_schedule(options: CallOptions, name: str) -> Call[Any, Schedule]:
    """One schedule, with its next and last run. Raises NotFound for an unknown name."""
    return schedule_from_proto((yield from unary(options, "GetSchedule", pb.GetScheduleRequest(name=name))))


def list_schedules(options: CallOptions) -> Call[Any, builtins.list[Schedule]]:
    """Every schedule, by name (fetched a page at a time)."""
    schedules: builtins.list[Schedule] = []
    token = ""
    while True:
        request = pb.ListSchedulesRequest(page_size=DEFAULT_PAGE_SIZE, page_token=token)
        page = yield from unary(options, "ListSchedules", request)
        schedules += [schedule_from_proto(item) for item in page.schedules]
        token = page.next_page_token
        if not token:
            return schedules


def update_schedule(
    options: CallOptions,
    name: str,
    *,
    cron: str | None = None,
    time_zone: str | None = None,
    job: JobSpec | Mapping[str, Any] | None = None,
) -> Call[Any, Schedule]:
    """Change what is given of a schedule: its cron expression, its time zone, its job template (the
    whole template). A new cron or time zone moves its next run to the first occurrence from now.
    Raises NotFound for an unknown name, InvalidArgument (``schedule.<field>``) for a bad value."""
    request = schedule_update_request(name, cron, time_zone, job)
    return schedule_from_proto((yield from unary(options, "UpdateSchedule", request)))


def pause_schedule(options: CallOptions, name: str) -> Call[Any, Schedule]:
    """Hold a schedule: it submits nothing until ``resume_schedule``. Raises NotFound for an unknown name."""
    return schedule_from_proto((yield from unary(options, "PauseSchedule", pb.PauseScheduleRequest(name=name))))


def resume_schedule(options: CallOptions, name: str) -> Call[Any, Schedule]:
    """Let a paused schedule run again; occurrences missed while paused fire once, for the latest."""
    return schedule_from_proto((yield from unary(options, "ResumeSchedule", pb.ResumeScheduleRequest(name=name))))


def trigger_schedule(options: CallOptions, name: str) -> Call[Any, Job]:
    """Submit one job of the schedule now (paused or not) and return it. Not retried: a retry after a
    lost answer would submit a second job."""
    request = pb.TriggerScheduleRequest(name=name)
    return job_from_proto((yield from unary(options, "TriggerSchedule", request, retry=NO_RETRY)))


def list_types(options: CallOptions, *, page_size: int = DEFAULT_PAGE_SIZE) -> Call[JobType, None]:
    """Every job type that has jobs, limits or a pause, by name, fetched a page at a time."""
    token = ""
    while True:
        page = yield from unary(options, "ListJobTypes", pb.ListJobTypesRequest(page_size=page_size, page_token=token))
        for message in page.types:
            yield Emit(job_type_from_proto(message))
        token = page.next_page_token
        if not token:
            return


def pause_type(options: CallOptions, type: str) -> Call[Any, JobType]:
    """Pause a job type on every executor: submits are still accepted, but no new attempt starts until
    ``resume_type``; running attempts finish. A type without jobs may be paused."""
    return job_type_from_proto((yield from unary(options, "PauseJobType", pb.PauseJobTypeRequest(type=type))))


def resume_type(options: CallOptions, type: str) -> Call[Any, JobType]:
    """Lift the pause of a job type; executors lease its READY jobs at once."""
    return job_type_from_proto((yield from unary(options, "ResumeJobType", pb.ResumeJobTypeRequest(type=type))))


def list_executors(options: CallOptions) -> Call[Any, builtins.list[ExecutorInfo]]:
    """The executors alive now, oldest first."""
    reply = yield from unary(options, "ListExecutors", pb.ListExecutorsRequest())
    return [executor_from_proto(item) for item in reply.executors]


def delete_schedule(options: CallOptions, name: str) -> Call[Any, None]:
    """Delete a schedule; jobs it already submitted are left alone. Raises NotFound for an unknown name."""
    yield from delete(options, "DeleteSchedule", pb.DeleteScheduleRequest(name=name))
