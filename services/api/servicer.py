"""jobs.v1.JobService: converts requests to domain calls and domain results to responses.

Database calls are blocking (psycopg2), so they run on a thread pool sized like the connection pool;
the event loop only converts and waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, TypeVar

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from services.api import convert, metrics
from services.api.group_commit import GroupCommitter
from services.api.settings import DEFAULT_PAGE_SIZE, ApiSettings
from services.api.watch import JobWatcher
from shared.database.jobs import JobStore
from shared.database.limits import LimitsStore
from shared.database.schedules import ScheduleStore
from shared.errors import IdempotencyConflict, InvalidArgument
from shared.jobs import NewJob, SubmitResult
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1 import job_service_pb2_grpc as pb_grpc
from shared.telemetry import current_traceparent

__all__ = ["JobServicer"]

T = TypeVar("T")
tracer = trace.get_tracer("services.api")


class JobServicer(pb_grpc.JobServiceServicer):
    def __init__(self, store: JobStore, settings: ApiSettings) -> None:
        self.store = store
        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=settings.db_pool_size, thread_name_prefix="db")
        self.submitter: GroupCommitter[tuple[NewJob, str], SubmitResult | IdempotencyConflict] = GroupCommitter(
            lambda jobs: self._db(store.submit_jobs_independently, jobs), max_group=settings.max_batch_size
        )
        self.watcher = JobWatcher(lambda ids: self._db(store.get_jobs, ids), settings.watch_poll_interval_seconds)
        self.schedules = ScheduleStore(store.engine)
        self.limits = LimitsStore(store.engine)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking JobStore call on the database thread pool, inside a client span."""
        with tracer.start_as_current_span(
            f"db {fn.__name__}", kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"}
        ):
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _validated(
        self, request: pb.SubmitJobRequest, traceparent: str | None, batch_position: int | None = None
    ) -> tuple[NewJob, str]:
        job = convert.new_job_from_proto(request, self.settings.job_timeout_seconds, traceparent)
        return job, job.validate(self.settings.max_payload_bytes, batch_position)

    async def SubmitJob(self, request: pb.SubmitJobRequest, context: grpc.aio.ServicerContext) -> Any:
        validated = self._validated(request, current_traceparent())
        if validated[0].has_dependencies:
            # Locks its dependencies in a transaction of its own: not for a shared group commit.
            outcome: SubmitResult | IdempotencyConflict = await self._db(
                self.store.submit_job_with_dependencies, validated
            )
        else:
            outcome = await self.submitter.submit(validated)
        if isinstance(outcome, IdempotencyConflict):
            raise outcome
        result = outcome
        metrics.record_submitted([result])
        return convert.submit_result_to_proto(result, request)

    async def SubmitJobs(self, request: pb.SubmitJobsRequest, context: grpc.aio.ServicerContext) -> Any:
        if not request.jobs:
            raise InvalidArgument("jobs", "must contain at least one job")
        if len(request.jobs) > self.settings.max_batch_size:
            raise InvalidArgument(
                "jobs", f"has {len(request.jobs)} jobs; at most {self.settings.max_batch_size} per call"
            )
        jobs = []
        traceparent = current_traceparent()
        for index, item in enumerate(request.jobs):
            try:
                jobs.append(self._validated(item, traceparent, batch_position=index))
            except InvalidArgument as exc:
                raise exc.within(f"jobs[{index}]") from None
        results = await self._db(self.store.submit_jobs, jobs)
        metrics.record_submitted(results)
        return convert.submit_results_to_proto(results, request.jobs)

    async def GetJob(self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.job_to_proto(await self._db(self.store.get_job, request.job_id))

    async def ListJobs(self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext) -> Any:
        status = convert.status_from_proto(request.status)
        job_type = request.type or None
        page_size = request.page_size or DEFAULT_PAGE_SIZE
        if not 1 <= page_size <= self.settings.max_page_size:
            raise InvalidArgument(
                "page_size", f"must be between 1 and {self.settings.max_page_size}, got {request.page_size}"
            )
        before = convert.page_token_decode(request.page_token, status, job_type)
        jobs = await self._db(self.store.list_jobs, status, job_type, before, page_size + 1)
        response = pb.ListJobsResponse(jobs=[convert.job_to_proto(job) for job in jobs[:page_size]])
        if len(jobs) > page_size:
            response.next_page_token = convert.page_token_encode(jobs[page_size - 1].job_id, status, job_type)
        return response

    async def GetStats(self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.stats_to_proto(await self._db(self.store.count_jobs))

    async def CancelJob(self, request: pb.CancelJobRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.job_to_proto(await self._db(self.store.cancel_job, request.job_id))

    async def RetryJob(self, request: pb.RetryJobRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.job_to_proto(await self._db(self.store.retry_job, request.job_id))

    async def WatchJob(self, request: pb.WatchJobRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Job]:
        first = await self._db(self.store.get_job, request.job_id)
        async for job in self.watcher.watch(first):
            yield convert.job_to_proto(job)

    async def CreateSchedule(self, request: pb.CreateScheduleRequest, context: grpc.aio.ServicerContext) -> Any:
        new = convert.schedule_from_proto(request.schedule, self.settings.job_timeout_seconds)
        expression, template, first = new.validate(self.settings.max_payload_bytes, datetime.now(timezone.utc))
        schedule = await self._db(self.schedules.create_schedule, new.name, expression, template, first)
        return convert.schedule_to_proto(schedule)

    async def GetSchedule(self, request: pb.GetScheduleRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.schedule_to_proto(await self._db(self.schedules.get_schedule, request.name))

    async def ListSchedules(self, request: pb.ListSchedulesRequest, context: grpc.aio.ServicerContext) -> Any:
        schedules = await self._db(self.schedules.list_schedules)
        return pb.ListSchedulesResponse(schedules=[convert.schedule_to_proto(s) for s in schedules])

    async def DeleteSchedule(self, request: pb.DeleteScheduleRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._db(self.schedules.delete_schedule, request.name)
        return pb.DeleteScheduleResponse()

    async def SetTypeLimits(self, request: pb.SetTypeLimitsRequest, context: grpc.aio.ServicerContext) -> Any:
        limits = convert.limits_from_proto(request)
        limits.validate()
        return convert.limits_to_proto(await self._db(self.limits.set_type_limits, limits))

    async def ListTypeLimits(self, request: pb.ListTypeLimitsRequest, context: grpc.aio.ServicerContext) -> Any:
        limits = await self._db(self.limits.list_type_limits)
        return pb.ListTypeLimitsResponse(limits=[convert.limits_to_proto(item) for item in limits])

    async def DeleteTypeLimits(self, request: pb.DeleteTypeLimitsRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._db(self.limits.delete_type_limits, request.type)
        return pb.DeleteTypeLimitsResponse()

    async def close(self) -> None:
        await self.watcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
