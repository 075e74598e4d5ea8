import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Job(_message.Message):
    __slots__ = ("job_id", "type", "idempotency_key", "status", "priority", "payload", "created_at", "updated_at", "scheduled_at", "started_at", "finished_at", "error_message", "attempts", "result", "max_attempts", "timeout_seconds", "run_at", "cancel_requested", "progress", "depends_on", "pending_dependencies", "callback", "concurrency_key", "unique_key", "schedule", "fairness_key")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[Job.Status]
        PENDING: _ClassVar[Job.Status]
        READY: _ClassVar[Job.Status]
        PROCESSING: _ClassVar[Job.Status]
        COMPLETED: _ClassVar[Job.Status]
        FAILED: _ClassVar[Job.Status]
        CANCELLED: _ClassVar[Job.Status]
        WAITING: _ClassVar[Job.Status]
    STATUS_UNSPECIFIED: Job.Status
    PENDING: Job.Status
    READY: Job.Status
    PROCESSING: Job.Status
    COMPLETED: Job.Status
    FAILED: Job.Status
    CANCELLED: Job.Status
    WAITING: Job.Status
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RUN_AT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    PENDING_DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_KEY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    FAIRNESS_KEY_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    type: str
    idempotency_key: str
    status: Job.Status
    priority: int
    payload: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    scheduled_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    error_message: str
    attempts: int
    result: _struct_pb2.Struct
    max_attempts: int
    timeout_seconds: int
    run_at: _timestamp_pb2.Timestamp
    cancel_requested: bool
    progress: Progress
    depends_on: _containers.RepeatedScalarFieldContainer[int]
    pending_dependencies: int
    callback: Callback
    concurrency_key: str
    unique_key: str
    schedule: str
    fairness_key: str
    def __init__(self, job_id: _Optional[int] = ..., type: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., status: _Optional[_Union[Job.Status, str]] = ..., priority: _Optional[int] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error_message: _Optional[str] = ..., attempts: _Optional[int] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., max_attempts: _Optional[int] = ..., timeout_seconds: _Optional[int] = ..., run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_requested: _Optional[bool] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., depends_on: _Optional[_Iterable[int]] = ..., pending_dependencies: _Optional[int] = ..., callback: _Optional[_Union[Callback, _Mapping]] = ..., concurrency_key: _Optional[str] = ..., unique_key: _Optional[str] = ..., schedule: _Optional[str] = ..., fairness_key: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("percent", "message", "updated_at")
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    percent: int
    message: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, percent: _Optional[int] = ..., message: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Callback(_message.Message):
    __slots__ = ("url", "state", "attempts", "last_error", "delivery_job_id", "delivered_at")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Callback.State]
        WAITING: _ClassVar[Callback.State]
        SENDING: _ClassVar[Callback.State]
        DELIVERED: _ClassVar[Callback.State]
        FAILED: _ClassVar[Callback.State]
    STATE_UNSPECIFIED: Callback.State
    WAITING: Callback.State
    SENDING: Callback.State
    DELIVERED: Callback.State
    FAILED: Callback.State
    URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    url: str
    state: Callback.State
    attempts: int
    last_error: str
    delivery_job_id: int
    delivered_at: _timestamp_pb2.Timestamp
    def __init__(self, url: _Optional[str] = ..., state: _Optional[_Union[Callback.State, str]] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., delivery_job_id: _Optional[int] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("type", "payload", "idempotency_key", "priority", "scheduled_at", "max_attempts", "timeout_seconds", "depends_on", "depends_on_index", "callback_url", "concurrency_key", "unique_key", "fairness_key")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_INDEX_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_URL_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_KEY_FIELD_NUMBER: _ClassVar[int]
    FAIRNESS_KEY_FIELD_NUMBER: _ClassVar[int]
    type: str
    payload: _struct_pb2.Struct
    idempotency_key: str
    priority: int
    scheduled_at: _timestamp_pb2.Timestamp
    max_attempts: int
    timeout_seconds: int
    depends_on: _containers.RepeatedScalarFieldContainer[int]
    depends_on_index: _containers.RepeatedScalarFieldContainer[int]
    callback_url: str
    concurrency_key: str
    unique_key: str
    fairness_key: str
    def __init__(self, type: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., priority: _Optional[int] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_attempts: _Optional[int] = ..., timeout_seconds: _Optional[int] = ..., depends_on: _Optional[_Iterable[int]] = ..., depends_on_index: _Optional[_Iterable[int]] = ..., callback_url: _Optional[str] = ..., concurrency_key: _Optional[str] = ..., unique_key: _Optional[str] = ..., fairness_key: _Optional[str] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job", "created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job: Job
    created: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class SubmitJobsRequest(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[SubmitJobRequest]
    def __init__(self, jobs: _Optional[_Iterable[_Union[SubmitJobRequest, _Mapping]]] = ...) -> None: ...

class SubmitJobsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SubmitJobResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[SubmitJobResponse, _Mapping]]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    def __init__(self, job_id: _Optional[int] = ...) -> None: ...

class JobFilter(_message.Message):
    __slots__ = ("status", "type", "idempotency_key", "unique_key", "concurrency_key", "schedule", "created_after", "created_before", "fairness_key")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_KEY_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    FAIRNESS_KEY_FIELD_NUMBER: _ClassVar[int]
    status: Job.Status
    type: str
    idempotency_key: str
    unique_key: str
    concurrency_key: str
    schedule: str
    created_after: _timestamp_pb2.Timestamp
    created_before: _timestamp_pb2.Timestamp
    fairness_key: str
    def __init__(self, status: _Optional[_Union[Job.Status, str]] = ..., type: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., unique_key: _Optional[str] = ..., concurrency_key: _Optional[str] = ..., schedule: _Optional[str] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fairness_key: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("status", "type", "page_size", "page_token", "idempotency_key", "unique_key", "concurrency_key", "schedule", "created_after", "created_before", "fairness_key")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_KEY_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    FAIRNESS_KEY_FIELD_NUMBER: _ClassVar[int]
    status: Job.Status
    type: str
    page_size: int
    page_token: str
    idempotency_key: str
    unique_key: str
    concurrency_key: str
    schedule: str
    created_after: _timestamp_pb2.Timestamp
    created_before: _timestamp_pb2.Timestamp
    fairness_key: str
    def __init__(self, status: _Optional[_Union[Job.Status, str]] = ..., type: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., unique_key: _Optional[str] = ..., concurrency_key: _Optional[str] = ..., schedule: _Optional[str] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fairness_key: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("status_breakdown", "type_breakdown", "avg_attempts_for_failed_jobs", "recent_failures")
    class StatusBreakdownEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class TypeBreakdownEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    STATUS_BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    TYPE_BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    AVG_ATTEMPTS_FOR_FAILED_JOBS_FIELD_NUMBER: _ClassVar[int]
    RECENT_FAILURES_FIELD_NUMBER: _ClassVar[int]
    status_breakdown: _containers.ScalarMap[str, int]
    type_breakdown: _containers.ScalarMap[str, int]
    avg_attempts_for_failed_jobs: float
    recent_failures: _containers.RepeatedCompositeFieldContainer[RecentFailure]
    def __init__(self, status_breakdown: _Optional[_Mapping[str, int]] = ..., type_breakdown: _Optional[_Mapping[str, int]] = ..., avg_attempts_for_failed_jobs: _Optional[float] = ..., recent_failures: _Optional[_Iterable[_Union[RecentFailure, _Mapping]]] = ...) -> None: ...

class RecentFailure(_message.Message):
    __slots__ = ("job_id", "type", "error", "attempts", "failed_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    type: str
    error: str
    attempts: int
    failed_at: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[int] = ..., type: _Optional[str] = ..., error: _Optional[str] = ..., attempts: _Optional[int] = ..., failed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    def __init__(self, job_id: _Optional[int] = ...) -> None: ...

class RetryJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    def __init__(self, job_id: _Optional[int] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    def __init__(self, job_id: _Optional[int] = ...) -> None: ...

class ListJobAttemptsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    def __init__(self, job_id: _Optional[int] = ...) -> None: ...

class ListJobAttemptsResponse(_message.Message):
    __slots__ = ("attempts",)
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    attempts: _containers.RepeatedCompositeFieldContainer[JobAttempt]
    def __init__(self, attempts: _Optional[_Iterable[_Union[JobAttempt, _Mapping]]] = ...) -> None: ...

class JobAttempt(_message.Message):
    __slots__ = ("attempt", "executor_id", "started_at", "finished_at", "outcome", "error_type", "error_message", "traceback")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[JobAttempt.Outcome]
        RUNNING: _ClassVar[JobAttempt.Outcome]
        COMPLETED: _ClassVar[JobAttempt.Outcome]
        FAILED: _ClassVar[JobAttempt.Outcome]
        TIMED_OUT: _ClassVar[JobAttempt.Outcome]
        CANCELLED: _ClassVar[JobAttempt.Outcome]
        LOST: _ClassVar[JobAttempt.Outcome]
    OUTCOME_UNSPECIFIED: JobAttempt.Outcome
    RUNNING: JobAttempt.Outcome
    COMPLETED: JobAttempt.Outcome
    FAILED: JobAttempt.Outcome
    TIMED_OUT: JobAttempt.Outcome
    CANCELLED: JobAttempt.Outcome
    LOST: JobAttempt.Outcome
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    executor_id: str
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    outcome: JobAttempt.Outcome
    error_type: str
    error_message: str
    traceback: str
    def __init__(self, attempt: _Optional[int] = ..., executor_id: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[JobAttempt.Outcome, str]] = ..., error_type: _Optional[str] = ..., error_message: _Optional[str] = ..., traceback: _Optional[str] = ...) -> None: ...

class CancelJobsRequest(_message.Message):
    __slots__ = ("filter", "validate_only")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    filter: JobFilter
    validate_only: bool
    def __init__(self, filter: _Optional[_Union[JobFilter, _Mapping]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class CancelJobsResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class RetryJobsRequest(_message.Message):
    __slots__ = ("filter", "validate_only")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    filter: JobFilter
    validate_only: bool
    def __init__(self, filter: _Optional[_Union[JobFilter, _Mapping]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class RetryJobsResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class TypeLimits(_message.Message):
    __slots__ = ("type", "max_running", "max_running_per_key", "rate_limit", "rate_period_seconds", "updated_at")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_PER_KEY_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RATE_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    type: str
    max_running: int
    max_running_per_key: int
    rate_limit: int
    rate_period_seconds: int
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[str] = ..., max_running: _Optional[int] = ..., max_running_per_key: _Optional[int] = ..., rate_limit: _Optional[int] = ..., rate_period_seconds: _Optional[int] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetTypeLimitsRequest(_message.Message):
    __slots__ = ("type", "max_running", "max_running_per_key", "rate_limit", "rate_period_seconds")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_PER_KEY_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RATE_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    type: str
    max_running: int
    max_running_per_key: int
    rate_limit: int
    rate_period_seconds: int
    def __init__(self, type: _Optional[str] = ..., max_running: _Optional[int] = ..., max_running_per_key: _Optional[int] = ..., rate_limit: _Optional[int] = ..., rate_period_seconds: _Optional[int] = ...) -> None: ...

class ListTypeLimitsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTypeLimitsResponse(_message.Message):
    __slots__ = ("limits",)
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    limits: _containers.RepeatedCompositeFieldContainer[TypeLimits]
    def __init__(self, limits: _Optional[_Iterable[_Union[TypeLimits, _Mapping]]] = ...) -> None: ...

class DeleteTypeLimitsRequest(_message.Message):
    __slots__ = ("type",)
    TYPE_FIELD_NUMBER: _ClassVar[int]
    type: str
    def __init__(self, type: _Optional[str] = ...) -> None: ...

class DeleteTypeLimitsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobType(_message.Message):
    __slots__ = ("type", "counts", "limits", "paused", "paused_at")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_AT_FIELD_NUMBER: _ClassVar[int]
    type: str
    counts: _containers.ScalarMap[str, int]
    limits: TypeLimits
    paused: bool
    paused_at: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[str] = ..., counts: _Optional[_Mapping[str, int]] = ..., limits: _Optional[_Union[TypeLimits, _Mapping]] = ..., paused: _Optional[bool] = ..., paused_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListJobTypesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobTypesResponse(_message.Message):
    __slots__ = ("types", "next_page_token")
    TYPES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedCompositeFieldContainer[JobType]
    next_page_token: str
    def __init__(self, types: _Optional[_Iterable[_Union[JobType, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PauseJobTypeRequest(_message.Message):
    __slots__ = ("type",)
    TYPE_FIELD_NUMBER: _ClassVar[int]
    type: str
    def __init__(self, type: _Optional[str] = ...) -> None: ...

class ResumeJobTypeRequest(_message.Message):
    __slots__ = ("type",)
    TYPE_FIELD_NUMBER: _ClassVar[int]
    type: str
    def __init__(self, type: _Optional[str] = ...) -> None: ...

class Executor(_message.Message):
    __slots__ = ("executor_id", "host", "pid", "version", "types", "concurrency", "running", "started_at", "last_seen_at")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    host: str
    pid: int
    version: str
    types: _containers.RepeatedScalarFieldContainer[str]
    concurrency: int
    running: int
    started_at: _timestamp_pb2.Timestamp
    last_seen_at: _timestamp_pb2.Timestamp
    def __init__(self, executor_id: _Optional[str] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ..., version: _Optional[str] = ..., types: _Optional[_Iterable[str]] = ..., concurrency: _Optional[int] = ..., running: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListExecutorsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListExecutorsResponse(_message.Message):
    __slots__ = ("executors",)
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    executors: _containers.RepeatedCompositeFieldContainer[Executor]
    def __init__(self, executors: _Optional[_Iterable[_Union[Executor, _Mapping]]] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("name", "cron", "time_zone", "job", "next_run_at", "last_run_at", "last_job_id", "created_at", "paused", "paused_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    cron: str
    time_zone: str
    job: SubmitJobRequest
    next_run_at: _timestamp_pb2.Timestamp
    last_run_at: _timestamp_pb2.Timestamp
    last_job_id: int
    created_at: _timestamp_pb2.Timestamp
    paused: bool
    paused_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., cron: _Optional[str] = ..., time_zone: _Optional[str] = ..., job: _Optional[_Union[SubmitJobRequest, _Mapping]] = ..., next_run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_job_id: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., paused: _Optional[bool] = ..., paused_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateScheduleRequest(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class GetScheduleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules", "next_page_token")
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    next_page_token: str
    def __init__(self, schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateScheduleRequest(_message.Message):
    __slots__ = ("name", "schedule", "update_mask")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    name: str
    schedule: Schedule
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, name: _Optional[str] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class PauseScheduleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumeScheduleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class TriggerScheduleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteScheduleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteScheduleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCallerRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCallerResponse(_message.Message):
    __slots__ = ("role", "token_fingerprint", "authentication_enabled", "permitted_methods")
    class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ROLE_UNSPECIFIED: _ClassVar[GetCallerResponse.Role]
        READ: _ClassVar[GetCallerResponse.Role]
        SUBMIT: _ClassVar[GetCallerResponse.Role]
        ADMIN: _ClassVar[GetCallerResponse.Role]
    ROLE_UNSPECIFIED: GetCallerResponse.Role
    READ: GetCallerResponse.Role
    SUBMIT: GetCallerResponse.Role
    ADMIN: GetCallerResponse.Role
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    AUTHENTICATION_ENABLED_FIELD_NUMBER: _ClassVar[int]
    PERMITTED_METHODS_FIELD_NUMBER: _ClassVar[int]
    role: GetCallerResponse.Role
    token_fingerprint: str
    authentication_enabled: bool
    permitted_methods: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, role: _Optional[_Union[GetCallerResponse.Role, str]] = ..., token_fingerprint: _Optional[str] = ..., authentication_enabled: _Optional[bool] = ..., permitted_methods: _Optional[_Iterable[str]] = ...) -> None: ...
