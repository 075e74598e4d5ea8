"""``JobClient``: the blocking client of ``jobs.v1.JobService``."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc

from jobclient._channel import DEFAULT_DEADLINE, DEFAULT_TARGET, ConnectionSettings
from jobclient._convert import (
    job_from_proto,
    limits_from_proto,
    limits_request,
    list_request,
    same_version,
    schedule_from_proto,
    schedule_request,
    stats_from_proto,
    submit_request,
)
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
from jobclient.models import Job, JobSpec, JobStatus, Schedule, Stats, TypeLimits
from jobclient.retry import DEFAULT_RETRY, RetryPolicy, RetryState
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub

__all__ = ["DEFAULT_PAGE_SIZE", "JobClient"]

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 100
# A watch whose own deadline fires this close to the caller's timeout has run out of time.
_TIMEOUT_SLACK = 0.25


class JobClient:
    """A blocking client of the job service. Thread-safe; one per process is plenty.

    >>> with JobClient("localhost:50051") as client:
    ...     job = client.submit("send_email", {"to": "user@example.com"})
    ...     done = client.wait(job.job_id, timeout=60)

    Args:
        target: ``host:port`` of the api's gRPC port.
        token: a bearer token, sent as ``authorization: Bearer <token>`` with every call.
        tls: connect over TLS, trusting gRPC's default roots (or ``root_certificates``).
        root_certificates: PEM bytes, or the path of a PEM file, of the CA(s) to trust; implies ``tls``.
        deadline: seconds each try of a call may take (None: no limit). Streams (``watch``) have none.
        retry: how UNAVAILABLE and DEADLINE_EXCEEDED are retried (``NO_RETRY`` turns retrying off).
        options: extra gRPC channel arguments.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | str | Path | None = None,
        deadline: float | None = DEFAULT_DEADLINE,
        retry: RetryPolicy = DEFAULT_RETRY,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._settings = ConnectionSettings.build(target, token, tls, root_certificates, options)
        self._deadline = deadline
        self._retry = retry
        self._channel = self._settings.sync_channel()
        self._stub = JobServiceStub(self._channel)

    @property
    def target(self) -> str:
        return self._settings.target

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> JobClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JobClient({self.target!r})"

    # -- calls -------------------------------------------------------------------------------------------

    def submit(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
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
    ) -> Job:
        """Submit one job and return it (``job.created`` tells a new job from an existing one).

        Args:
            type: the handler name, 1-128 characters of ``a-z 0-9 _ . -``.
            payload: a JSON-like dict handed to the handler (default ``{}``).
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
        )
        request = submit_request(spec)
        reply = self._unary(self._stub.SubmitJob, request)
        return job_from_proto(reply.job, created=reply.created)

    def submit_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> builtins.list[Job]:
        """Submit several jobs in one call and one transaction (at most the server's MAX_BATCH_SIZE, 1000 by
        default). All are valid or none is stored; an InvalidArgument names the field as ``jobs[i].field``.
        Jobs without an idempotency key get a generated one. Returns the jobs in the order given."""
        specs = [JobSpec.coerce(job, i) for i, job in enumerate(jobs)]
        request = pb.SubmitJobsRequest(jobs=[submit_request(spec, f"jobs[{i}].") for i, spec in enumerate(specs)])
        reply = self._unary(self._stub.SubmitJobs, request)
        return [job_from_proto(result.job, created=result.created) for result in reply.results]

    def get(self, job_id: int) -> Job:
        """The job now. Raises NotFound for an unknown id."""
        return job_from_proto(self._unary(self._stub.GetJob, pb.GetJobRequest(job_id=job_id)))

    def list(
        self,
        *,
        status: JobStatus | str | None = None,
        type: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[Job]:
        """Every job matching the filters, newest first, fetched a page at a time as the iterator advances.

        ``status`` is a JobStatus or its name; ``type`` an exact job type; ``page_size`` 1-500.
        Stop early with ``itertools.islice(client.list(), 20)`` or ``break``.
        """
        token = ""
        while True:
            request = list_request(status, type, page_size, token)
            page = self._unary(self._stub.ListJobs, request)
            for message in page.jobs:
                yield job_from_proto(message)
            token = page.next_page_token
            if not token:
                return

    def cancel(self, job_id: int) -> Job:
        """Cancel a job: PENDING or READY ones become CANCELLED at once; for a PROCESSING one the request is
        recorded (``cancel_requested``) and its executor stops it. Raises FailedPrecondition for a finished
        job, NotFound for an unknown one."""
        try:
            return job_from_proto(self._unary(self._stub.CancelJob, pb.CancelJobRequest(job_id=job_id)))
        except FailedPrecondition as error:
            # A retried cancel finding the job CANCELLED: our earlier try did it and its answer was lost.
            if error.attempts > 1:
                job = self.get(job_id)
                if job.status is JobStatus.CANCELLED:
                    return job
            raise

    def retry(self, job_id: int) -> Job:
        """Re-queue a FAILED or CANCELLED job as a fresh READY job (attempts from zero). Raises
        FailedPrecondition for a job in any other state, NotFound for an unknown one."""
        try:
            return job_from_proto(self._unary(self._stub.RetryJob, pb.RetryJobRequest(job_id=job_id)))
        except FailedPrecondition as error:
            # A retried retry finding the job re-queued: our earlier try did it and its answer was lost.
            if error.attempts > 1:
                job = self.get(job_id)
                if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
                    return job
            raise

    def stats(self) -> Stats:
        """Counts by status and type, the average attempts of failed jobs, and the latest failures."""
        return stats_from_proto(self._unary(self._stub.GetStats, pb.GetStatsRequest()))

    def watch(self, job_id: int, timeout: float | None = None, *, retry: RetryPolicy | None = None) -> Iterator[Job]:
        """The job now, then again after every change, ending after it is COMPLETED, FAILED or CANCELLED.

        A dropped stream is reopened (with the retry policy's backoff) and repeats nothing already seen.
        ``timeout`` bounds the whole watch: WaitTimeout when the job has not finished by then. Breaking
        out of the loop cancels the stream. ``retry`` replaces the client's policy for reopening the stream
        (its count and time limits apply to consecutive failures; an update resets them).
        """
        ends = None if timeout is None else time.monotonic() + timeout
        state = RetryState(retry or self._retry, None)
        last: Job | None = None
        request = pb.WatchJobRequest(job_id=job_id)
        while True:
            remaining = None if ends is None else ends - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(job_id, timeout or 0, last)
            state.attempt += 1
            call = self._stub.WatchJob(request, timeout=remaining, metadata=self._settings.metadata)
            try:
                for message in call:
                    state.reset()
                    job = job_from_proto(message)
                    if last is not None and same_version(last, job):
                        continue
                    last = job
                    yield job
                    if job.finished:
                        return
                # The stream ended before the job finished (the api shutting down): open it again.
                error: JobClientError = Unavailable(
                    "the watch stream ended before the job finished", code="UNAVAILABLE"
                )
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
                if (
                    ends is not None
                    and isinstance(error, DeadlineExceeded)
                    and ends - time.monotonic() < _TIMEOUT_SLACK
                ):
                    raise WaitTimeout(job_id, timeout or 0, last) from None
            finally:
                call.cancel()
            delay = state.delay_before_retry(error)
            if delay is None:
                raise error
            time.sleep(delay)

    def wait(self, job_id: int, timeout: float | None = None, *, retry: RetryPolicy | None = None) -> Job:
        """Block until the job is COMPLETED, FAILED or CANCELLED and return it (check ``job.status``).
        Raises WaitTimeout after ``timeout`` seconds; ``retry`` as in ``watch``."""
        last: Job | None = None
        for job in self.watch(job_id, timeout, retry=retry):
            last = job
        assert last is not None and last.finished
        return last

    # -- limits and schedules ----------------------------------------------------------------------------

    def set_limits(
        self,
        type: str,
        *,
        max_running: int | None = None,
        max_running_per_key: int | None = None,
        rate_limit: int | None = None,
        rate_period_seconds: int | None = None,
    ) -> TypeLimits:
        """Replace the limits of one job type (None: no limit on that dimension); enforced across all
        executors. ``rate_limit`` attempts may start in any window of ``rate_period_seconds`` (default 60)."""
        limits = TypeLimits(type, max_running, max_running_per_key, rate_limit, rate_period_seconds)
        return limits_from_proto(self._unary(self._stub.SetTypeLimits, limits_request(limits)))

    def list_limits(self) -> builtins.list[TypeLimits]:
        """The limits of every job type that has any, by type."""
        reply = self._unary(self._stub.ListTypeLimits, pb.ListTypeLimitsRequest())
        return [limits_from_proto(item) for item in reply.limits]

    def delete_limits(self, type: str) -> None:
        """Remove every limit of a job type. Raises NotFound when it has none."""
        try:
            self._unary(self._stub.DeleteTypeLimits, pb.DeleteTypeLimitsRequest(type=type))
        except NotFound as error:
            if error.attempts <= 1:  # a retried delete finding nothing: our earlier try did it
                raise

    def create_schedule(
        self, name: str, cron: str, job: JobSpec | Mapping[str, Any], *, time_zone: str = "UTC"
    ) -> Schedule:
        """Create a periodic schedule: at each occurrence of the five-field ``cron`` expression, read in
        ``time_zone``, the scheduler submits ``job`` (a JobSpec or dict without run_at, idempotency_key or
        dependencies). Raises AlreadyExists when the name is taken."""
        schedule = Schedule(name, cron, JobSpec.coerce(job), time_zone)
        try:
            return schedule_from_proto(self._unary(self._stub.CreateSchedule, schedule_request(schedule)))
        except AlreadyExists as error:
            if error.attempts > 1:  # a retried create finding the schedule: our earlier try made it
                return self.get_schedule(name)
            raise

    def get_schedule(self, name: str) -> Schedule:
        """One schedule, with its next and last run. Raises NotFound for an unknown name."""
        return schedule_from_proto(self._unary(self._stub.GetSchedule, pb.GetScheduleRequest(name=name)))

    def list_schedules(self) -> builtins.list[Schedule]:
        """Every schedule, by name."""
        reply = self._unary(self._stub.ListSchedules, pb.ListSchedulesRequest())
        return [schedule_from_proto(item) for item in reply.schedules]

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule; jobs it already submitted are left alone. Raises NotFound for an unknown name."""
        try:
            self._unary(self._stub.DeleteSchedule, pb.DeleteScheduleRequest(name=name))
        except NotFound as error:
            if error.attempts <= 1:
                raise

    # -- plumbing ----------------------------------------------------------------------------------------

    def _unary(self, method: Callable[..., T], request: Any) -> T:
        """One unary call, retried by the policy; the error raised records how many tries were made."""
        state = RetryState(self._retry, self._deadline)
        while True:
            timeout = state.attempt_timeout()
            try:
                return method(request, timeout=timeout, metadata=self._settings.metadata)
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
            error.attempts = state.attempt
            delay = state.delay_before_retry(error)
            if delay is None:
                raise error
            time.sleep(delay)
