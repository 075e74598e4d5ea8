"""jobs.v1.JobService: converts requests to domain calls and domain results to responses.

Every database call is an operation of the gateway (``self.db``, shared.database.Database), awaited:
the gateway runs it off the event loop, so the loop only converts and waits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

import grpc

from services.api import convert, metrics
from services.api.auth import current_caller
from services.api.group_commit import GroupCommitter
from services.api.settings import BULK_BATCH_SIZE, BULK_SELECT_SIZE, DEFAULT_PAGE_SIZE, ApiSettings
from services.api.watch import JobWatcher
from shared.database import Database
from shared.errors import IdempotencyConflict, InvalidArgument
from shared.jobs import (
    CANCELLABLE_STATUSES,
    RETRYABLE_STATUSES,
    JobCursor,
    JobStatus,
    SubmitResult,
    ValidatedJob,
    check_type_name,
)
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1 import job_service_pb2_grpc as pb_grpc
from shared.telemetry import current_traceparent

__all__ = ["BULK_METHODS", "JobServicer"]

# The RPCs that work through every job a filter selects before they answer: they get
# BULK_REQUEST_TIMEOUT_SECONDS rather than REQUEST_TIMEOUT_SECONDS.
BULK_METHODS = ("CancelJobs", "RetryJobs")


class _HasName(Protocol):
    @property
    def name(self) -> str: ...


Named = TypeVar("Named", bound=_HasName)


class JobServicer(pb_grpc.JobServiceServicer):
    def __init__(self, db: Database, settings: ApiSettings) -> None:
        self.db = db
        self.settings = settings
        self.submitter: GroupCommitter[ValidatedJob, SubmitResult | IdempotencyConflict] = GroupCommitter(
            db.submit_jobs_independently, max_group=settings.max_batch_size
        )
        self.watcher = JobWatcher(db.get_jobs, settings.watch_poll_interval_seconds)
        self.authentication_enabled = bool(settings.api_tokens)

    def _validated(
        self, request: pb.SubmitJobRequest, traceparent: str | None, batch_position: int | None = None
    ) -> ValidatedJob:
        job = convert.new_job_from_proto(request, self.settings.job_timeout_seconds, traceparent)
        return job.validate(self.settings.max_payload_bytes, batch_position, self.settings.egress)

    async def SubmitJob(self, request: pb.SubmitJobRequest, context: grpc.aio.ServicerContext) -> Any:
        validated = self._validated(request, current_traceparent())
        if validated.job.has_dependencies:
            # Locks its dependencies in a transaction of its own: not for a shared group commit.
            outcome: SubmitResult | IdempotencyConflict = await self.db.submit_job_with_dependencies(validated)
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
        results = await self.db.submit_jobs(jobs)
        metrics.record_submitted(results)
        return convert.submit_results_to_proto(results, request.jobs)

    async def GetJob(self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.job_to_proto(await self.db.get_job(request.job_id))

    def _page_size(self, requested: int) -> int:
        page_size = requested or DEFAULT_PAGE_SIZE
        if not 1 <= page_size <= self.settings.max_page_size:
            raise InvalidArgument("page_size", f"must be between 1 and {self.settings.max_page_size}, got {requested}")
        return page_size

    async def ListJobs(self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext) -> Any:
        filter = convert.filter_from_proto(request).validate()
        page_size = self._page_size(request.page_size)
        after = convert.page_token_decode(request.page_token, filter)
        jobs = await self.db.list_jobs(filter, after, page_size + 1)
        response = pb.ListJobsResponse(jobs=[convert.job_to_proto(job) for job in jobs[:page_size]])
        if len(jobs) > page_size:
            last = jobs[page_size - 1]
            response.next_page_token = convert.page_token_encode(JobCursor(last.job_id, last.created_at), filter)
        return response

    async def ListJobAttempts(self, request: pb.ListJobAttemptsRequest, context: grpc.aio.ServicerContext) -> Any:
        attempts = await self.db.list_job_attempts(request.job_id)
        return pb.ListJobAttemptsResponse(attempts=[convert.attempt_to_proto(attempt) for attempt in attempts])

    async def CancelJobs(self, request: pb.CancelJobsRequest, context: grpc.aio.ServicerContext) -> Any:
        count = await self._bulk(request, CANCELLABLE_STATUSES, "cancel", self.db.cancel_jobs)
        return pb.CancelJobsResponse(count=count)

    async def RetryJobs(self, request: pb.RetryJobsRequest, context: grpc.aio.ServicerContext) -> Any:
        count = await self._bulk(request, RETRYABLE_STATUSES, "retry", self.db.retry_jobs)
        return pb.RetryJobsResponse(count=count)

    async def _bulk(
        self,
        request: pb.CancelJobsRequest | pb.RetryJobsRequest,
        statuses: Sequence[JobStatus],
        verb: str,
        apply: Callable[[Sequence[int]], Awaitable[int]],
    ) -> int:
        """Apply a bulk action to every job ``request.filter`` selects in ``statuses``, status by status:
        the ids of BULK_SELECT_SIZE matching jobs at a time, each read after the last one's end so that
        every job is looked at once however its status changes meanwhile, then ``apply`` to
        BULK_BATCH_SIZE of them per transaction (its statement re-checks the status on the row it
        locks). With validate_only, count the jobs instead. Returns how many jobs changed (or would)."""
        try:
            filter = convert.filter_from_proto(request.filter).validate()
        except InvalidArgument as exc:
            raise exc.within("filter") from None
        if filter.empty:
            raise InvalidArgument("filter", f"must set at least one field: an empty filter would {verb} every job")
        if filter.status is not None and filter.status not in statuses:
            names = ", ".join(status.value for status in statuses)
            raise InvalidArgument("filter.status", f"{verb} applies to {names} jobs, not {filter.status.value}")
        total = 0
        for status in [filter.status] if filter.status is not None else statuses:
            scoped = dataclasses.replace(filter, status=status)
            after: JobCursor | None = None
            while True:
                page = await self.db.select_matching_jobs(scoped, after, BULK_SELECT_SIZE)
                if request.validate_only:
                    total += len(page)
                else:
                    for start in range(0, len(page), BULK_BATCH_SIZE):
                        total += await apply([cursor.job_id for cursor in page[start : start + BULK_BATCH_SIZE]])
                if len(page) < BULK_SELECT_SIZE:
                    break
                after = page[-1]
        return total

    async def GetStats(self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.stats_to_proto(await self.db.count_jobs())

    async def CancelJob(self, request: pb.CancelJobRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.job_to_proto(await self.db.cancel_job(request.job_id))

    async def RetryJob(self, request: pb.RetryJobRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.job_to_proto(await self.db.retry_job(request.job_id))

    async def WatchJob(self, request: pb.WatchJobRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Job]:
        first = await self.db.get_job(request.job_id)
        async for job in self.watcher.watch(first):
            yield convert.job_to_proto(job)

    async def CreateSchedule(self, request: pb.CreateScheduleRequest, context: grpc.aio.ServicerContext) -> Any:
        new = convert.schedule_from_proto(request.schedule, self.settings.job_timeout_seconds)
        expression, template, first = new.validate(
            self.settings.max_payload_bytes, datetime.now(timezone.utc), self.settings.egress
        )
        schedule = await self.db.create_schedule(new.name, expression, template, first)
        return convert.schedule_to_proto(schedule)

    async def GetSchedule(self, request: pb.GetScheduleRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.schedule_to_proto(await self.db.get_schedule(request.name))

    async def ListSchedules(self, request: pb.ListSchedulesRequest, context: grpc.aio.ServicerContext) -> Any:
        schedules, token = await self._page_by_name(request, "schedules", self.db.list_schedules)
        return pb.ListSchedulesResponse(
            schedules=[convert.schedule_to_proto(s) for s in schedules], next_page_token=token
        )

    async def _page_by_name(
        self, request: Any, listing: str, fetch: Callable[[str, int], Awaitable[list[Named]]]
    ) -> tuple[list[Named], str]:
        """One page of a list ordered by name (``request`` has page_size and page_token), and the token
        of the next page ("" on the last)."""
        page_size = self._page_size(request.page_size)
        items = await fetch(convert.name_page_token_decode(request.page_token, listing), page_size + 1)
        if len(items) <= page_size:
            return items, ""
        return items[:page_size], convert.name_page_token_encode(listing, items[page_size - 1].name)

    async def UpdateSchedule(self, request: pb.UpdateScheduleRequest, context: grpc.aio.ServicerContext) -> Any:
        current = await self.db.get_schedule(request.name)
        new, retimed = convert.schedule_update_from_proto(request, current, self.settings.job_timeout_seconds)
        expression, template, first = new.validate(self.settings.max_payload_bytes, datetime.now(timezone.utc))
        schedule = await self.db.update_schedule(current.name, expression, template, first if retimed else None)
        return convert.schedule_to_proto(schedule)

    async def PauseSchedule(self, request: pb.PauseScheduleRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.schedule_to_proto(await self.db.pause_schedule(request.name))

    async def ResumeSchedule(self, request: pb.ResumeScheduleRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.schedule_to_proto(await self.db.resume_schedule(request.name))

    async def TriggerSchedule(self, request: pb.TriggerScheduleRequest, context: grpc.aio.ServicerContext) -> Any:
        result = await self.db.trigger_schedule(request.name)
        metrics.record_submitted([result])
        return convert.job_to_proto(result.job)

    async def DeleteSchedule(self, request: pb.DeleteScheduleRequest, context: grpc.aio.ServicerContext) -> Any:
        await self.db.delete_schedule(request.name)
        return pb.DeleteScheduleResponse()

    async def SetTypeLimits(self, request: pb.SetTypeLimitsRequest, context: grpc.aio.ServicerContext) -> Any:
        limits = convert.limits_from_proto(request)
        limits.validate()
        return convert.limits_to_proto(await self.db.set_type_limits(limits))

    async def ListTypeLimits(self, request: pb.ListTypeLimitsRequest, context: grpc.aio.ServicerContext) -> Any:
        limits = await self.db.list_type_limits()
        return pb.ListTypeLimitsResponse(limits=[convert.limits_to_proto(item) for item in limits])

    async def DeleteTypeLimits(self, request: pb.DeleteTypeLimitsRequest, context: grpc.aio.ServicerContext) -> Any:
        await self.db.delete_type_limits(request.type)
        return pb.DeleteTypeLimitsResponse()

    async def GetCaller(self, request: pb.GetCallerRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.caller_to_proto(current_caller(), self.authentication_enabled)

    async def ListJobTypes(self, request: pb.ListJobTypesRequest, context: grpc.aio.ServicerContext) -> Any:
        types, token = await self._page_by_name(request, "types", self.db.list_job_types)
        return pb.ListJobTypesResponse(types=[convert.job_type_to_proto(item) for item in types], next_page_token=token)

    async def PauseJobType(self, request: pb.PauseJobTypeRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.job_type_to_proto(await self.db.pause_job_type(check_type_name(request.type)))

    async def ResumeJobType(self, request: pb.ResumeJobTypeRequest, context: grpc.aio.ServicerContext) -> Any:
        return convert.job_type_to_proto(await self.db.resume_job_type(check_type_name(request.type)))

    async def ListExecutors(self, request: pb.ListExecutorsRequest, context: grpc.aio.ServicerContext) -> Any:
        executors = await self.db.list_executors()
        return pb.ListExecutorsResponse(executors=[convert.executor_to_proto(item) for item in executors])

    async def close(self) -> None:
        await self.watcher.close()
