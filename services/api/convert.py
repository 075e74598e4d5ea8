"""Protobuf messages to domain objects and back. The only place that knows both."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from shared.database.jobs import JobCounts
from shared.errors import InvalidArgument
from shared.jobs import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, Job, JobStatus, NewJob, SubmitResult
from shared.limits import TypeLimits
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.schedules import NewSchedule, Schedule
from shared.structs import struct_to_dict

__all__ = [
    "job_to_proto",
    "limits_from_proto",
    "limits_to_proto",
    "new_job_from_proto",
    "page_token_decode",
    "page_token_encode",
    "schedule_from_proto",
    "schedule_to_proto",
    "stats_to_proto",
    "status_from_proto",
    "submit_result_to_proto",
    "submit_results_to_proto",
]


def dict_to_struct(value: dict[str, Any] | None, target: struct_pb2.Struct) -> None:
    target.Clear()
    if value:
        target.update(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _timestamp(value: datetime | None, target: timestamp_pb2.Timestamp) -> None:
    # Timestamp.FromDatetime goes through time tuples; a timedelta from the epoch is several times faster.
    if value is not None:
        since = value - _EPOCH
        target.seconds = since.days * 86400 + since.seconds
        target.nanos = since.microseconds * 1000


def _datetime(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    try:
        return getattr(message, field).ToDatetime(tzinfo=timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(field, f"is not a valid timestamp: {exc}") from exc


def new_job_from_proto(
    request: pb.SubmitJobRequest, default_timeout_seconds: int, traceparent: str | None = None
) -> NewJob:
    """A NewJob with the defaults filled in; validation is NewJob.validate's."""
    # One ListFields call instead of a HasField per optional field: submits convert every job.
    given = {descriptor.name: value for descriptor, value in request.ListFields()}
    payload = given.get("payload")
    return NewJob.of(
        type=request.type,
        payload=struct_to_dict(payload) if payload is not None else {},
        idempotency_key=given.get("idempotency_key"),
        priority=given.get("priority", DEFAULT_PRIORITY),
        scheduled_at=_datetime(request, "scheduled_at") if "scheduled_at" in given else None,
        max_attempts=given.get("max_attempts", DEFAULT_MAX_ATTEMPTS),
        timeout_seconds=given.get("timeout_seconds", default_timeout_seconds),
        traceparent=traceparent,
        depends_on=tuple(given.get("depends_on", ())),
        depends_on_index=tuple(given.get("depends_on_index", ())),
        callback_url=given.get("callback_url"),
        concurrency_key=given.get("concurrency_key"),
        unique_key=given.get("unique_key"),
    )


def job_to_proto(job: Job, payload: struct_pb2.Struct | None = None) -> pb.Job:
    """The Job message; ``payload``, when given, is copied as the job's payload instead of converting
    ``job.payload`` (a submit answers with the payload it was sent: a C++ copy, not a Python walk)."""
    message = pb.Job()
    _fill_job(job, message, payload)
    return message


def _fill_job(job: Job, message: pb.Job, payload: struct_pb2.Struct | None = None) -> None:
    # Filled in place: building a message and then placing it in a response copies it again.
    message.job_id = job.job_id
    message.type = job.type
    message.status = job.status.value  # type: ignore[assignment]  # the enum value's name
    message.priority = job.priority
    message.attempts = job.attempts
    message.max_attempts = job.max_attempts
    message.timeout_seconds = job.timeout_seconds
    if job.cancel_requested:
        message.cancel_requested = True
    if job.depends_on:
        message.depends_on.extend(job.depends_on)
        message.pending_dependencies = job.pending_dependencies
    for field in ("idempotency_key", "concurrency_key", "unique_key"):
        if (value := getattr(job, field)) is not None:
            setattr(message, field, value)
    if job.schedule_name is not None:
        message.schedule = job.schedule_name
    if job.callback_url is not None:
        _callback(job, message.callback)
    if job.error_message is not None:
        message.error_message = job.error_message
    if payload is not None:
        message.payload.CopyFrom(payload)
    else:
        dict_to_struct(job.payload, message.payload)
    if job.result is not None:
        dict_to_struct(job.result, message.result)
    for field in ("created_at", "updated_at", "scheduled_at", "started_at", "finished_at", "run_at"):
        if (moment := getattr(job, field)) is not None:
            _timestamp(moment, getattr(message, field))
    if job.progress_percent is not None:
        message.progress.percent = job.progress_percent
        message.progress.message = job.progress_message or ""
        _timestamp(job.progress_at, message.progress.updated_at)


def _callback(job: Job, target: pb.Callback) -> None:
    """The webhook's state, derived from the job and its newest delivery job (see get_job.sql)."""
    target.url = job.callback_url or ""
    if not job.status.finished:
        # Not finished (again, after RetryJob): whatever an earlier delivery did is not this run's.
        target.state = pb.Callback.WAITING
        return
    if job.callback_job_id is None:
        # Only in what the statement that finished the job returns: its trigger is queuing the delivery.
        target.state = pb.Callback.SENDING
        return
    target.delivery_job_id = job.callback_job_id
    if job.callback_delivery_pruned:
        # Retention deleted the delivery job: its outcome is no longer known (state unspecified).
        return
    target.attempts = job.callback_delivery_attempts
    if job.callback_delivery_error is not None:
        target.last_error = job.callback_delivery_error
    delivery = job.callback_delivery_status
    if delivery is JobStatus.COMPLETED:
        target.state = pb.Callback.DELIVERED
        _timestamp(job.callback_delivery_finished_at, target.delivered_at)
    elif delivery in (JobStatus.FAILED, JobStatus.CANCELLED):
        target.state = pb.Callback.FAILED
    else:
        target.state = pb.Callback.SENDING


def submit_result_to_proto(result: SubmitResult, request: pb.SubmitJobRequest) -> pb.SubmitJobResponse:
    """The answer to one submitted job. A job this submit created has the request's payload; one it
    found (idempotent replay, or merged by unique_key) answers with its own."""
    response = pb.SubmitJobResponse(created=result.created)
    _fill_job(result.job, response.job, request.payload if result.created else None)
    return response


def submit_results_to_proto(
    results: Sequence[SubmitResult], requests: Sequence[pb.SubmitJobRequest]
) -> pb.SubmitJobsResponse:
    """The answer to a SubmitJobs call: submit_result_to_proto for each job, built in place."""
    response = pb.SubmitJobsResponse()
    add = response.results.add
    for result, request in zip(results, requests, strict=True):
        item = add(created=result.created)
        _fill_job(result.job, item.job, request.payload if result.created else None)
    return response


def status_from_proto(value: int) -> JobStatus | None:
    """None for STATUS_UNSPECIFIED (no filter)."""
    if value == pb.Job.STATUS_UNSPECIFIED:
        return None
    try:
        return JobStatus(pb.Job.Status.Name(value))
    except ValueError:
        raise InvalidArgument("status", f"unknown status {value}") from None


def stats_to_proto(counts: JobCounts) -> pb.GetStatsResponse:
    response = pb.GetStatsResponse(avg_attempts_for_failed_jobs=counts.avg_attempts_for_failed_jobs)
    for status, n in counts.by_status.items():
        response.status_breakdown[status.value] = n
    for job_type, n in counts.by_type.items():
        response.type_breakdown[job_type] = n
    for failure in counts.recent_failures:
        item = response.recent_failures.add(
            job_id=failure.job_id, type=failure.type, error=failure.error, attempts=failure.attempts
        )
        _timestamp(failure.failed_at, item.failed_at)
    return response


def page_token_encode(before_job_id: int, status: JobStatus | None, job_type: str | None) -> str:
    """An opaque token that remembers where the page ended and which filter made it."""
    raw = f"v1|{before_job_id}|{status.value if status else ''}|{job_type or ''}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def page_token_decode(token: str, status: JobStatus | None, job_type: str | None) -> int | None:
    """The job id a page starts below; None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        version, before, token_status, token_type = raw.split("|", 3)
        before_job_id = int(before)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("page_token", "is not a token this service issued") from None
    if version != "v1" or token_status != (status.value if status else "") or token_type != (job_type or ""):
        raise InvalidArgument("page_token", "was issued for a different status or type filter")
    return before_job_id


# --- Periodic schedules ---------------------------------------------------------------------------


def schedule_from_proto(message: pb.Schedule, default_timeout_seconds: int) -> NewSchedule:
    """A NewSchedule from CreateSchedule's ``schedule``; validation is NewSchedule.validate's. The
    output-only fields (next_run_at, last_run_at, last_job_id, created_at) are ignored."""
    try:
        job = new_job_from_proto(message.job, default_timeout_seconds)
    except InvalidArgument as exc:
        raise exc.within("schedule.job") from None
    return NewSchedule(name=message.name, cron=message.cron, time_zone=message.time_zone, job=job)


def schedule_to_proto(schedule: Schedule) -> pb.Schedule:
    template = schedule.template
    message = pb.Schedule(
        name=schedule.name,
        cron=schedule.cron,
        time_zone=schedule.time_zone,
        job=pb.SubmitJobRequest(type=template.type, priority=template.priority, max_attempts=template.max_attempts),
        last_job_id=schedule.last_job_id or 0,
    )
    dict_to_struct(template.payload, message.job.payload)
    for field in ("timeout_seconds", "callback_url", "concurrency_key", "unique_key"):
        if (value := getattr(template, field)) is not None:
            setattr(message.job, field, value)
    for field in ("next_run_at", "last_run_at", "created_at"):
        _timestamp(getattr(schedule, field), getattr(message, field))
    return message


# -- type limits ---------------------------------------------------------------------------------------

_LIMIT_FIELDS = ("max_running", "max_running_per_key", "rate_limit", "rate_period_seconds")


def limits_from_proto(request: pb.SetTypeLimitsRequest) -> TypeLimits:
    """TypeLimits as requested (unset fields None); validation is TypeLimits.validate's."""
    values = {field: getattr(request, field) if request.HasField(field) else None for field in _LIMIT_FIELDS}
    return TypeLimits(type=request.type, **values)


def limits_to_proto(limits: TypeLimits) -> pb.TypeLimits:
    message = pb.TypeLimits(type=limits.type)
    for field in _LIMIT_FIELDS:
        if (value := getattr(limits, field)) is not None:
            setattr(message, field, value)
    _timestamp(limits.updated_at, message.updated_at)
    return message
