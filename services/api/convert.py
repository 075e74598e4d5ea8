"""Protobuf messages to domain objects and back. The only place that knows both."""

from __future__ import annotations

import base64
import binascii
import hashlib
import operator
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from itertools import chain
from typing import Any

from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.api.auth import Principal
from shared.errors import InvalidArgument
from shared.executors import ExecutorRecord
from shared.job_types import JobType
from shared.jobs import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PRIORITY,
    Job,
    JobAttempt,
    JobCounts,
    JobCursor,
    JobFilter,
    JobStatus,
    NewJob,
    SubmitResult,
)
from shared.limits import TypeLimits
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.schedules import NewSchedule, Schedule
from shared.structs import struct_to_dict

__all__ = [
    "attempt_to_proto",
    "caller_to_proto",
    "executor_to_proto",
    "filter_from_proto",
    "job_to_proto",
    "job_type_to_proto",
    "limits_from_proto",
    "limits_to_proto",
    "name_page_token_decode",
    "name_page_token_encode",
    "new_job_from_proto",
    "page_token_decode",
    "page_token_encode",
    "refuse_nul_characters",
    "schedule_from_proto",
    "schedule_to_proto",
    "schedule_update_from_proto",
    "stats_to_proto",
    "status_from_proto",
    "submit_result_to_proto",
    "submit_results_to_proto",
]


def refuse_nul_characters(message: Message) -> None:
    """Raise InvalidArgument naming the first string field of a request (nested and repeated ones too) that
    holds a NUL character. PostgreSQL text cannot store one, so every string any request carries towards
    SQL is checked here, once, before the servicer sees it. Payloads (google.protobuf.Struct) are
    NewJob.validate's.

    The check itself runs in C for a whole SubmitJobs batch (about 0.7 µs per job); only a request that
    holds a NUL is walked again in Python to name the field.
    """
    if _StringFields.of(message.DESCRIPTOR).holds_nul(message):
        _raise_for_nul(message, "")


class _StringFields:
    """Where a message type keeps its strings: its own string fields, and the message fields to look in."""

    _known: dict[Any, _StringFields] = {}

    def __init__(self) -> None:
        self.singular: Callable[[Message], Any] | None = None
        self.repeated: list[str] = []
        self.nested: list[tuple[str, _StringFields]] = []
        self.nested_repeated: list[tuple[str, _StringFields]] = []
        self.maps: list[str] = []
        self.flat = True  # no strings but its own singular ones

    @classmethod
    def of(cls, descriptor: Any) -> _StringFields:
        fields = cls._known.get(descriptor)
        if fields is None:
            fields = cls._known[descriptor] = cls()  # stored first: a message type may contain itself
            singular = [
                f.name for f in descriptor.fields if f.type == FieldDescriptor.TYPE_STRING and not f.is_repeated
            ]
            if singular:
                getter = operator.attrgetter(*singular)
                fields.singular = getter if len(singular) > 1 else lambda m: (getter(m),)
            for field in descriptor.fields:
                inner = field.message_type
                if field.type == FieldDescriptor.TYPE_STRING and field.is_repeated:
                    fields.repeated.append(field.name)
                elif inner is None or inner.full_name.startswith("google.protobuf."):
                    continue
                elif inner.GetOptions().map_entry:
                    fields.maps.append(field.name)
                else:
                    target = fields.nested_repeated if field.is_repeated else fields.nested
                    target.append((field.name, cls.of(inner)))
            fields.flat = not (fields.repeated or fields.nested or fields.nested_repeated or fields.maps)
        return fields

    def holds_nul(self, message: Message) -> bool:
        if self.singular is not None and "\x00" in "".join(self.singular(message)):
            return True
        return not self.flat and self._inside_holds_nul(message)

    def _inside_holds_nul(self, message: Message) -> bool:
        if any("\x00" in "".join(getattr(message, name)) for name in self.repeated):
            return True
        for name in self.maps:
            if any(
                isinstance(text, str) and "\x00" in text for pair in getattr(message, name).items() for text in pair
            ):
                return True
        if any(message.HasField(name) and inner.holds_nul(getattr(message, name)) for name, inner in self.nested):
            return True
        for name, inner in self.nested_repeated:
            items = getattr(message, name)
            if inner.flat and inner.singular is not None:
                if "\x00" in "".join(chain.from_iterable(map(inner.singular, items))):
                    return True
            elif any(inner.holds_nul(item) for item in items):
                return True
        return False


def _raise_for_nul(message: Message, prefix: str) -> None:
    for field, value in message.ListFields():
        name = prefix + field.name
        if field.type == FieldDescriptor.TYPE_STRING:
            for index, text in enumerate(value) if field.is_repeated else ((None, value),):
                if "\x00" in text:
                    raise InvalidArgument(name if index is None else f"{name}[{index}]", _NO_NUL)
        elif field.message_type is None or field.message_type.full_name.startswith("google.protobuf."):
            continue
        elif field.message_type.GetOptions().map_entry:
            if any(isinstance(text, str) and "\x00" in text for pair in value.items() for text in pair):
                raise InvalidArgument(name, _NO_NUL)
        elif field.is_repeated:
            for index, item in enumerate(value):
                _raise_for_nul(item, f"{name}[{index}].")
        else:
            _raise_for_nul(value, f"{name}.")


_NO_NUL = "must not contain NUL characters (PostgreSQL text cannot hold them)"


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
        fairness_key=given.get("fairness_key"),
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
    for field in ("idempotency_key", "concurrency_key", "unique_key", "fairness_key"):
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


_MAX_JOB_ID = 2**63 - 1  # job_id is a bigint
_FILTER_KEYS = ("type", "idempotency_key", "unique_key", "concurrency_key", "fairness_key", "schedule")


def filter_from_proto(message: Any) -> JobFilter:
    """The JobFilter of a JobFilter message, or of a ListJobsRequest (which has the same fields); empty
    strings and unset fields match anything. Validation is JobFilter.validate's."""
    return JobFilter(
        status=status_from_proto(message.status),
        created_after=_datetime(message, "created_after"),
        created_before=_datetime(message, "created_before"),
        **{name: getattr(message, name) or None for name in _FILTER_KEYS},
    )


def attempt_to_proto(attempt: JobAttempt) -> pb.JobAttempt:
    message = pb.JobAttempt(
        attempt=attempt.attempt,
        executor_id=attempt.executor_id or "",
        outcome=attempt.outcome.value,  # the enum value's name
    )
    for field in ("error_type", "error_message", "traceback"):
        if (value := getattr(attempt, field)) is not None:
            setattr(message, field, value)
    _timestamp(attempt.started_at, message.started_at)
    _timestamp(attempt.finished_at, message.finished_at)
    return message


# A page token, base64url: ListJobs' "v2|<job_id>|<created_at in µs since the epoch>|<digest of the filter>";
# a list ordered by name (ListJobTypes, ListSchedules): "v2|<list>|<the last name shown>".
_TOKEN_VERSION = "v2"


def _filter_digest(filter: JobFilter) -> str:
    return hashlib.blake2b(repr(filter).encode(), digest_size=6).hexdigest()


def _token_encode(*fields: str) -> str:
    return base64.urlsafe_b64encode("|".join((_TOKEN_VERSION, *fields)).encode()).decode().rstrip("=")


def _token_decode(token: str, count: int) -> list[str]:
    """The ``count`` fields of a token _token_encode made; InvalidArgument for anything else."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("page_token", "is not a token this service issued") from None
    version, *fields = raw.split("|", count)
    if version != _TOKEN_VERSION or len(fields) != count:
        raise InvalidArgument("page_token", "is not a token this service issued")
    return fields


def page_token_encode(last: JobCursor, filter: JobFilter) -> str:
    """An opaque token that remembers where the page ended and which filter made it."""
    micros = (last.created_at - _EPOCH) // timedelta(microseconds=1)
    return _token_encode(str(last.job_id), str(micros), _filter_digest(filter))


def page_token_decode(token: str, filter: JobFilter) -> JobCursor | None:
    """Where the page starts (after this job); None for the first page."""
    if not token:
        return None
    job_id, micros, digest = _token_decode(token, 3)
    try:
        cursor = JobCursor(int(job_id), _EPOCH + timedelta(microseconds=int(micros)))
        if not 0 < cursor.job_id <= _MAX_JOB_ID:
            raise ValueError(cursor.job_id)
    except (ValueError, OverflowError):
        raise InvalidArgument("page_token", "is not a token this service issued") from None
    if digest != _filter_digest(filter):
        raise InvalidArgument("page_token", "was issued for a different filter")
    return cursor


def name_page_token_encode(listing: str, after: str) -> str:
    """The token of a list ordered by name (``listing``: "types", "schedules"): the last name shown."""
    return _token_encode(listing, after)


def name_page_token_decode(token: str, listing: str) -> str:
    """The name a page of ``listing`` starts after; "" for the first page."""
    if not token:
        return ""
    token_listing, after = _token_decode(token, 2)
    if token_listing != listing:
        raise InvalidArgument("page_token", f"was issued for another list than {listing}")
    return after


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
    for field in ("timeout_seconds", "callback_url", "concurrency_key", "unique_key", "fairness_key"):
        if (value := getattr(template, field)) is not None:
            setattr(message.job, field, value)
    for field in ("next_run_at", "last_run_at", "created_at", "paused_at"):
        _timestamp(getattr(schedule, field), getattr(message, field))
    message.paused = schedule.paused
    return message


# What UpdateSchedule may change (and the fields of "job" one by one, as "job.<field>").
_UPDATABLE_SCHEDULE_FIELDS = ("cron", "time_zone", "job")


def schedule_update_from_proto(
    request: pb.UpdateScheduleRequest, current: Schedule, default_timeout_seconds: int
) -> tuple[NewSchedule, bool]:
    """``current`` with the fields of ``request.update_mask`` taken from ``request.schedule`` (validation
    is NewSchedule.validate's), and whether its timing (the cron or the time zone) changed."""
    given = request.schedule
    set_fields = {descriptor.name for descriptor, _ in given.ListFields()}
    paths = list(request.update_mask.paths) or [field for field in _UPDATABLE_SCHEDULE_FIELDS if field in set_fields]
    if not paths:
        raise InvalidArgument("update_mask", "names no field to change: give cron, time_zone or job")
    mask = field_mask_pb2.FieldMask(paths=paths)
    for path in paths:
        if path.split(".", 1)[0] not in _UPDATABLE_SCHEDULE_FIELDS:
            raise InvalidArgument("update_mask", f"{path!r} cannot be changed; only cron, time_zone, job, job.<field>")
    descriptor: Any = pb.Schedule.DESCRIPTOR
    if not mask.IsValidForDescriptor(descriptor):
        raise InvalidArgument("update_mask", f"{', '.join(paths)!r} names a field a schedule does not have")
    merged = schedule_to_proto(current)
    mask.MergeMessage(given, merged, replace_message_field=True, replace_repeated_field=True)
    return schedule_from_proto(merged, default_timeout_seconds), any(path in ("cron", "time_zone") for path in paths)


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


# -- the caller ------------------------------------------------------------------------------------------

_JOB_SERVICE = pb.DESCRIPTOR.services_by_name["JobService"]


def caller_to_proto(caller: Principal, authentication_enabled: bool) -> pb.GetCallerResponse:
    """GetCaller's answer: the caller's role and the JobService RPCs it may call (by METHOD_ROLES)."""
    permitted = [
        method.name for method in _JOB_SERVICE.methods if caller.may_call(f"/{_JOB_SERVICE.full_name}/{method.name}")
    ]
    return pb.GetCallerResponse(
        role=caller.role.name,
        token_fingerprint=caller.fingerprint,
        authentication_enabled=authentication_enabled,
        permitted_methods=permitted,
    )


def job_type_to_proto(job_type: JobType) -> pb.JobType:
    message = pb.JobType(type=job_type.type, paused=job_type.paused)
    for status, jobs in job_type.counts.items():
        message.counts[status.value] = jobs
    if job_type.limits is not None:
        message.limits.CopyFrom(limits_to_proto(job_type.limits))
    _timestamp(job_type.paused_at, message.paused_at)
    return message


def executor_to_proto(record: ExecutorRecord) -> pb.Executor:
    message = pb.Executor(
        executor_id=record.executor_id,
        host=record.host,
        pid=record.pid,
        version=record.version,
        types=record.types,
        concurrency=record.concurrency,
        running=record.running,
    )
    _timestamp(record.started_at, message.started_at)
    _timestamp(record.last_seen_at, message.last_seen_at)
    return message
