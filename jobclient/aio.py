"""``AsyncJobClient``: the asyncio (grpc.aio) client of ``jobs.v1.JobService``; same calls as JobClient."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
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
from jobclient.client import DEFAULT_PAGE_SIZE
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

__all__ = ["AsyncJobClient"]

T = TypeVar("T")
_TIMEOUT_SLACK = 0.25


class AsyncJobClient:
    """The asyncio client; every method of JobClient, as coroutines (``list`` and ``watch`` are async
    iterators). Create and use it inside a running event loop, one per loop:

    >>> async with AsyncJobClient("localhost:50051") as client:
    ...     job = await client.submit("send_email", {"to": "user@example.com"})
    ...     async for update in client.watch(job.job_id):
    ...         print(update.status)

    Arguments are those of JobClient.
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
        self._channel: grpc.aio.Channel | None = None
        self._stub_instance: JobServiceStub | None = None

    @property
    def target(self) -> str:
        return self._settings.target

    @property
    def _stub(self) -> JobServiceStub:
        # The channel is made on first use, inside the event loop that will run it.
        if self._stub_instance is None:
            self._channel = self._settings.aio_channel()
            self._stub_instance = JobServiceStub(self._channel)
        return self._stub_instance

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub_instance = None

    async def __aenter__(self) -> AsyncJobClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncJobClient({self.target!r})"

    # -- calls (see JobClient for the details of each) ---------------------------------------------------

    async def submit(
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
        """Submit one job and return it; a generated idempotency key makes the retries safe."""
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
        reply = await self._unary(self._stub.SubmitJob, submit_request(spec))
        return job_from_proto(reply.job, created=reply.created)

    async def submit_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> builtins.list[Job]:
        """Submit several jobs in one call and one transaction; all valid or none stored."""
        specs = [JobSpec.coerce(job, i) for i, job in enumerate(jobs)]
        request = pb.SubmitJobsRequest(jobs=[submit_request(spec, f"jobs[{i}].") for i, spec in enumerate(specs)])
        reply = await self._unary(self._stub.SubmitJobs, request)
        return [job_from_proto(result.job, created=result.created) for result in reply.results]

    async def get(self, job_id: int) -> Job:
        """The job now. Raises NotFound for an unknown id."""
        return job_from_proto(await self._unary(self._stub.GetJob, pb.GetJobRequest(job_id=job_id)))

    async def list(
        self,
        *,
        status: JobStatus | str | None = None,
        type: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[Job]:
        """Every job matching the filters, newest first, a page at a time (``async for``)."""
        token = ""
        while True:
            page = await self._unary(self._stub.ListJobs, list_request(status, type, page_size, token))
            for message in page.jobs:
                yield job_from_proto(message)
            token = page.next_page_token
            if not token:
                return

    async def cancel(self, job_id: int) -> Job:
        """Cancel a job (see JobClient.cancel)."""
        try:
            return job_from_proto(await self._unary(self._stub.CancelJob, pb.CancelJobRequest(job_id=job_id)))
        except FailedPrecondition as error:
            if error.attempts > 1:
                job = await self.get(job_id)
                if job.status is JobStatus.CANCELLED:
                    return job
            raise

    async def retry(self, job_id: int) -> Job:
        """Re-queue a FAILED or CANCELLED job (see JobClient.retry)."""
        try:
            return job_from_proto(await self._unary(self._stub.RetryJob, pb.RetryJobRequest(job_id=job_id)))
        except FailedPrecondition as error:
            if error.attempts > 1:
                job = await self.get(job_id)
                if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
                    return job
            raise

    async def stats(self) -> Stats:
        """Counts by status and type, the average attempts of failed jobs, and the latest failures."""
        return stats_from_proto(await self._unary(self._stub.GetStats, pb.GetStatsRequest()))

    async def watch(
        self, job_id: int, timeout: float | None = None, *, retry: RetryPolicy | None = None
    ) -> AsyncIterator[Job]:
        """The job now and after every change, until it finishes (see JobClient.watch)."""
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
                async for message in call:
                    state.reset()
                    job = job_from_proto(message)
                    if last is not None and same_version(last, job):
                        continue
                    last = job
                    yield job
                    if job.finished:
                        return
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
            await asyncio.sleep(delay)

    async def wait(self, job_id: int, timeout: float | None = None, *, retry: RetryPolicy | None = None) -> Job:
        """The job once it is COMPLETED, FAILED or CANCELLED. Raises WaitTimeout after ``timeout`` seconds."""
        last: Job | None = None
        async for job in self.watch(job_id, timeout, retry=retry):
            last = job
        assert last is not None and last.finished
        return last

    # -- limits and schedules ----------------------------------------------------------------------------

    async def set_limits(
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
        return limits_from_proto(await self._unary(self._stub.SetTypeLimits, limits_request(limits)))

    async def list_limits(self) -> builtins.list[TypeLimits]:
        """The limits of every job type that has any, by type."""
        reply = await self._unary(self._stub.ListTypeLimits, pb.ListTypeLimitsRequest())
        return [limits_from_proto(item) for item in reply.limits]

    async def delete_limits(self, type: str) -> None:
        """Remove every limit of a job type. Raises NotFound when it has none."""
        try:
            await self._unary(self._stub.DeleteTypeLimits, pb.DeleteTypeLimitsRequest(type=type))
        except NotFound as error:
            if error.attempts <= 1:  # a retried delete finding nothing: our earlier try did it
                raise

    async def create_schedule(
        self, name: str, cron: str, job: JobSpec | Mapping[str, Any], *, time_zone: str = "UTC"
    ) -> Schedule:
        """Create a periodic schedule: at each occurrence of the five-field ``cron`` expression, read in
        ``time_zone``, the scheduler submits ``job`` (a JobSpec or dict without run_at, idempotency_key or
        dependencies). Raises AlreadyExists when the name is taken."""
        schedule = Schedule(name, cron, JobSpec.coerce(job), time_zone)
        try:
            return schedule_from_proto(await self._unary(self._stub.CreateSchedule, schedule_request(schedule)))
        except AlreadyExists as error:
            if error.attempts > 1:  # a retried create finding the schedule: our earlier try made it
                return await self.get_schedule(name)
            raise

    async def get_schedule(self, name: str) -> Schedule:
        """One schedule, with its next and last run. Raises NotFound for an unknown name."""
        return schedule_from_proto(await self._unary(self._stub.GetSchedule, pb.GetScheduleRequest(name=name)))

    async def list_schedules(self) -> builtins.list[Schedule]:
        """Every schedule, by name."""
        reply = await self._unary(self._stub.ListSchedules, pb.ListSchedulesRequest())
        return [schedule_from_proto(item) for item in reply.schedules]

    async def delete_schedule(self, name: str) -> None:
        """Delete a schedule; jobs it already submitted are left alone. Raises NotFound for an unknown name."""
        try:
            await self._unary(self._stub.DeleteSchedule, pb.DeleteScheduleRequest(name=name))
        except NotFound as error:
            if error.attempts <= 1:
                raise

    # -- plumbing ----------------------------------------------------------------------------------------

    async def _unary(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        """One unary call, retried by the policy; the error raised records how many tries were made."""
        state = RetryState(self._retry, self._deadline)
        while True:
            timeout = state.attempt_timeout()
            try:
                return await method(request, timeout=timeout, metadata=self._settings.metadata)
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
            error.attempts = state.attempt
            delay = state.delay_before_retry(error)
            if delay is None:
                raise error
            await asyncio.sleep(delay)
