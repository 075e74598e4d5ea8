"""Protobuf messages to the client's own types and back: the only module of jobclient that builds or reads
messages (with errors.py, which reads status details)."""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from google.protobuf import struct_pb2

from jobclient._proto.jobs.v1 import job_service_pb2 as pb
from jobclient.errors import InvalidArgument
from jobclient.models import (
    Callback,
    ExecutorInfo,
    Job,
    JobAttempt,
    JobDefinition,
    JobFilter,
    JobSpec,
    JobStatus,
    JobType,
    Progress,
    RecentFailure,
    Schedule,
    Stats,
    TypeLimits,
)

__all__ = [
    "executor_from_proto",
    "job_from_proto",
    "job_type_from_proto",
    "limits_from_proto",
    "limits_request",
    "list_request",
    "new_idempotency_key",
    "same_version",
    "schedule_from_proto",
    "schedule_request",
    "schedule_update_request",
    "stats_from_proto",
    "submit_request",
]

_INT32_MAX = 2**31 - 1
# Struct keeps every number as a double; integral ones up to this (where doubles stop being exact) are
# given back as ints, as the submitter wrote them.
_MAX_EXACT_INT = 2**53


def new_idempotency_key() -> str:
    """A fresh key for a submit the caller gave none: retries of that submit reuse it."""
    return str(uuid.uuid4())


def struct_to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    """A payload or result as a dict with its integers intact (walked directly: json_format is slower)."""
    return {key: _plain(value) for key, value in message.fields.items()}


def _plain(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    if kind == "number_value" and value.number_value.is_integer() and abs(value.number_value) <= _MAX_EXACT_INT:
        return int(value.number_value)
    return None if kind in (None, "null_value") else getattr(value, kind)


def _inexact_integer(value: Any, path: str) -> str | None:
    """The path (``payload.items[2].n``) of the first integer in ``value`` beyond ±2**53, which a Struct
    would round; None when there is none."""
    if isinstance(value, int) and not isinstance(value, bool):
        return path if abs(value) > _MAX_EXACT_INT else None
    if isinstance(value, dict):
        children = [(f"{path}.{key}", item) for key, item in value.items()]
    elif isinstance(value, list | tuple):
        children = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    else:
        return None
    return next((found for child, item in children if (found := _inexact_integer(item, child))), None)


def _datetime(message: Any, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    value: datetime = getattr(message, name).ToDatetime(tzinfo=timezone.utc)
    return value


def _optional(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def callback_from_proto(message: pb.Callback) -> Callback:
    return Callback(
        url=message.url,
        state=pb.Callback.State.Name(message.state),
        attempts=message.attempts,
        last_error=_optional(message, "last_error"),
        delivery_job_id=message.delivery_job_id or None,
        delivered_at=_datetime(message, "delivered_at"),
    )


def job_from_proto(message: pb.Job, created: bool | None = None) -> Job:
    return Job(
        job_id=message.job_id,
        type=message.type,
        status=JobStatus(pb.Job.Status.Name(message.status)),
        priority=message.priority,
        payload=struct_to_dict(message.payload),
        attempts=message.attempts,
        max_attempts=message.max_attempts,
        timeout_seconds=message.timeout_seconds,
        created_at=_datetime(message, "created_at"),
        updated_at=_datetime(message, "updated_at"),
        run_at=_datetime(message, "run_at"),
        scheduled_at=_datetime(message, "scheduled_at"),
        started_at=_datetime(message, "started_at"),
        finished_at=_datetime(message, "finished_at"),
        idempotency_key=_optional(message, "idempotency_key"),
        error_message=_optional(message, "error_message"),
        result=struct_to_dict(message.result) if message.HasField("result") else None,
        cancel_requested=message.cancel_requested,
        progress=(
            Progress(message.progress.percent, message.progress.message, _datetime(message.progress, "updated_at"))
            if message.HasField("progress")
            else None
        ),
        depends_on=tuple(message.depends_on),
        pending_dependencies=message.pending_dependencies,
        callback=callback_from_proto(message.callback) if message.HasField("callback") else None,
        concurrency_key=_optional(message, "concurrency_key"),
        unique_key=_optional(message, "unique_key"),
        schedule=_optional(message, "schedule"),
        fairness_key=_optional(message, "fairness_key"),
        created=created,
    )


def same_version(a: Job, b: Job) -> bool:
    """True when ``b`` shows no change from ``a`` (what WatchJob itself compares)."""
    return (a.status, a.updated_at, a.attempts, a.cancel_requested, a.progress) == (
        b.status,
        b.updated_at,
        b.attempts,
        b.cancel_requested,
        b.progress,
    )


def stats_from_proto(message: pb.GetStatsResponse) -> Stats:
    return Stats(
        status_breakdown={
            **{status.value: 0 for status in JobStatus},
            **{name: int(n) for name, n in message.status_breakdown.items()},
        },
        type_breakdown=dict(sorted((name, int(n)) for name, n in message.type_breakdown.items())),
        avg_attempts_for_failed_jobs=message.avg_attempts_for_failed_jobs,
        recent_failures=tuple(
            RecentFailure(f.job_id, f.type, f.error, f.attempts, _datetime(f, "failed_at"))
            for f in message.recent_failures
        ),
    )


def _int32(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{field}: must be a whole number, got {value!r}", code=None, field=field)
    if not -_INT32_MAX <= value <= _INT32_MAX:
        raise InvalidArgument(f"{field}: {value} is out of range", code=None, field=field)
    return value


def _int64(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{field}: must be a whole number, got {value!r}", code=None, field=field)
    if not -(2**63) <= value < 2**63:
        raise InvalidArgument(f"{field}: {value} is out of range", code=None, field=field)
    return value


def _timeout_seconds(field: str, value: float | timedelta) -> int:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise InvalidArgument(f"{field}: must be a number of seconds, got {value!r}", code=None, field=field)
    return _int32(field, math.ceil(seconds))


def _payload_object(payload: object, job_type: str, declared: type | None, field: str) -> object:
    """The payload, with a model (anything with pydantic's ``model_dump``) or a dataclass as its dict. No
    pydantic import here: the client does not depend on it."""
    if declared is not None and not isinstance(payload, (Mapping, declared)):
        raise InvalidArgument(
            f"{field}: job type {job_type!r} takes a {declared.__name__}, got {type(payload).__name__}",
            code=None,
            field=field,
        )
    dump = getattr(payload, "model_dump", None)
    if callable(dump) and not isinstance(payload, type):
        return dump(mode="json", by_alias=True)  # a field's alias is its name in JSON
    if dataclasses.is_dataclass(payload) and not isinstance(payload, type):
        return dataclasses.asdict(payload)
    return payload


def submit_request(spec: JobSpec, prefix: str = "", generate_key: bool = True) -> pb.SubmitJobRequest:
    """The request for one job. A spec without an idempotency key gets a fresh one (unless ``generate_key``
    is False), so that retrying this very request can never create a second job. Bad values raise
    InvalidArgument before any call."""
    declared = spec.type.payload_type if isinstance(spec.type, JobDefinition) else None
    job_type = spec.type.name if isinstance(spec.type, JobDefinition) else spec.type
    if not isinstance(job_type, str):
        raise InvalidArgument(f"{prefix}type: must be a string", code=None, field=f"{prefix}type")
    request = pb.SubmitJobRequest(type=job_type)
    payload = _payload_object(spec.payload, job_type, declared, f"{prefix}payload")
    if not isinstance(payload, Mapping):
        raise InvalidArgument(
            f"{prefix}payload: must be a dict (a JSON object), a pydantic model or a dataclass, "
            f"got {type(payload).__name__}",
            code=None,
            field=f"{prefix}payload",
        )
    try:
        request.payload.update(dict(payload))
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidArgument(
            f"{prefix}payload: cannot be sent as JSON: {exc}", code=None, field=f"{prefix}payload"
        ) from None
    # A Struct keeps numbers as doubles: refuse what it would round, as the api refuses it over REST.
    inexact = _inexact_integer(dict(payload), f"{prefix}payload")
    if inexact is not None:
        raise InvalidArgument(
            f"{inexact}: an integer beyond ±2^53 cannot be sent exactly (payload numbers are doubles); "
            "send it as a string",
            code=None,
            field=inexact,
        )
    key = spec.idempotency_key if spec.idempotency_key is not None or not generate_key else new_idempotency_key()
    if key is not None:
        if not isinstance(key, str):
            raise InvalidArgument(
                f"{prefix}idempotency_key: must be a string", code=None, field=f"{prefix}idempotency_key"
            )
        request.idempotency_key = key
    for name in ("depends_on", "depends_on_index"):
        values = getattr(spec, name)
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
            raise InvalidArgument(f"{prefix}{name}: must be a list of job ids", code=None, field=f"{prefix}{name}")
        getattr(request, name).extend(
            [
                _int64(f"{prefix}{name}[{i}]", v) if name == "depends_on" else _int32(f"{prefix}{name}[{i}]", v)
                for i, v in enumerate(values)
            ]
        )
    for name in ("callback_url", "concurrency_key", "unique_key", "fairness_key"):
        value = getattr(spec, name)
        if value is not None:
            if not isinstance(value, str):
                raise InvalidArgument(f"{prefix}{name}: must be a string", code=None, field=f"{prefix}{name}")
            setattr(request, name, value)
    if spec.priority is not None:
        request.priority = _int32(f"{prefix}priority", spec.priority)
    if spec.max_attempts is not None:
        request.max_attempts = _int32(f"{prefix}max_attempts", spec.max_attempts)
    if spec.timeout is not None:
        request.timeout_seconds = _timeout_seconds(f"{prefix}timeout", spec.timeout)
    if spec.run_at is not None:
        if not isinstance(spec.run_at, datetime):
            raise InvalidArgument(f"{prefix}run_at: must be a datetime", code=None, field=f"{prefix}run_at")
        run_at = spec.run_at if spec.run_at.tzinfo is not None else spec.run_at.replace(tzinfo=timezone.utc)
        request.scheduled_at.FromDatetime(run_at.astimezone(timezone.utc))
    return request


def fill_filter(target: pb.JobFilter | pb.ListJobsRequest, filter: JobFilter, prefix: str = "") -> None:
    """Set ``filter``'s fields on a JobFilter or a ListJobsRequest (which has the same fields); a bad
    status is InvalidArgument naming ``prefix + "status"``."""
    if filter.status is not None:
        try:
            target.status = pb.Job.Status.Value(JobStatus(str(filter.status).upper()).value)  # type: ignore[assignment]
        except ValueError:
            names = ", ".join(s.value for s in JobStatus)
            field = prefix + "status"
            raise InvalidArgument(f"{field}: {filter.status!r} is not one of {names}", code=None, field=field) from None
    for name in ("type", "idempotency_key", "unique_key", "concurrency_key", "schedule", "fairness_key"):
        value = getattr(filter, name)
        if value:
            setattr(target, name, value)
    for name in ("created_after", "created_before"):
        moment = getattr(filter, name)
        if moment is not None:
            getattr(target, name).FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))


def list_request(filter: JobFilter, page_size: int, page_token: str) -> pb.ListJobsRequest:
    request = pb.ListJobsRequest(page_size=page_size, page_token=page_token)
    fill_filter(request, filter)
    return request


def bulk_filter(filter: JobFilter) -> pb.JobFilter:
    """The filter of a CancelJobs or RetryJobs request; an empty one is refused here already."""
    if filter.empty:
        raise InvalidArgument(
            "filter: must set at least one field: an empty filter would select every job", code=None, field="filter"
        )
    message = pb.JobFilter()
    fill_filter(message, filter, "filter.")
    return message


def attempt_from_proto(message: pb.JobAttempt) -> JobAttempt:
    return JobAttempt(
        attempt=message.attempt,
        outcome=pb.JobAttempt.Outcome.Name(message.outcome),
        executor_id=message.executor_id,
        started_at=_datetime(message, "started_at"),
        finished_at=_datetime(message, "finished_at"),
        error_type=_optional(message, "error_type"),
        error_message=_optional(message, "error_message"),
        traceback=_optional(message, "traceback"),
    )


_LIMIT_FIELDS = ("max_running", "max_running_per_key", "rate_limit", "rate_period_seconds")


def limits_request(limits: TypeLimits) -> pb.SetTypeLimitsRequest:
    request = pb.SetTypeLimitsRequest(type=limits.type)
    for name in _LIMIT_FIELDS:
        value = getattr(limits, name)
        if value is not None:
            setattr(request, name, _int32(name, value))
    return request


def limits_from_proto(message: pb.TypeLimits) -> TypeLimits:
    return TypeLimits(
        type=message.type,
        **{name: _optional(message, name) for name in _LIMIT_FIELDS},
        updated_at=_datetime(message, "updated_at"),
    )


def schedule_request(schedule: Schedule) -> pb.CreateScheduleRequest:
    # The template carries no idempotency key: the scheduler makes one per occurrence.
    job = submit_request(schedule.job, "schedule.job.", generate_key=False)
    return pb.CreateScheduleRequest(
        schedule=pb.Schedule(name=schedule.name, cron=schedule.cron, time_zone=schedule.time_zone, job=job)
    )


def schedule_from_proto(message: pb.Schedule) -> Schedule:
    template = message.job
    job = JobSpec(
        type=template.type,
        payload=struct_to_dict(template.payload),
        priority=_optional(template, "priority"),
        max_attempts=_optional(template, "max_attempts"),
        timeout=_optional(template, "timeout_seconds"),
        callback_url=_optional(template, "callback_url"),
        concurrency_key=_optional(template, "concurrency_key"),
        unique_key=_optional(template, "unique_key"),
        fairness_key=_optional(template, "fairness_key"),
    )
    return Schedule(
        name=message.name,
        cron=message.cron,
        job=job,
        time_zone=message.time_zone or "UTC",
        next_run_at=_datetime(message, "next_run_at"),
        last_run_at=_datetime(message, "last_run_at"),
        last_job_id=message.last_job_id or None,
        created_at=_datetime(message, "created_at"),
        paused=message.paused,
        paused_at=_datetime(message, "paused_at"),
    )


def schedule_update_request(
    name: str, cron: str | None, time_zone: str | None, job: JobSpec | Mapping[str, Any] | None
) -> pb.UpdateScheduleRequest:
    """UpdateSchedule for the given fields only (the mask names them); at least one must be given."""
    request = pb.UpdateScheduleRequest(name=name)
    if cron is not None:
        request.schedule.cron = cron
        request.update_mask.paths.append("cron")
    if time_zone is not None:
        request.schedule.time_zone = time_zone
        request.update_mask.paths.append("time_zone")
    if job is not None:
        request.schedule.job.CopyFrom(submit_request(JobSpec.coerce(job), "schedule.job.", generate_key=False))
        request.update_mask.paths.append("job")
    if not request.update_mask.paths:
        raise InvalidArgument("update_mask: give cron, time_zone or job to change", code=None, field="update_mask")
    return request


def job_type_from_proto(message: pb.JobType) -> JobType:
    return JobType(
        type=message.type,
        counts=dict(message.counts),
        limits=limits_from_proto(message.limits) if message.HasField("limits") else None,
        paused=message.paused,
        paused_at=_datetime(message, "paused_at"),
    )


def executor_from_proto(message: pb.Executor) -> ExecutorInfo:
    return ExecutorInfo(
        executor_id=message.executor_id,
        host=message.host,
        pid=message.pid,
        version=message.version,
        types=tuple(message.types),
        concurrency=message.concurrency,
        running=message.running,
        started_at=_datetime(message, "started_at"),
        last_seen_at=_datetime(message, "last_seen_at"),
    )
