"""The one table from domain errors to gRPC status codes, and from gRPC codes to HTTP statuses.

The REST shim never decides a status of its own: it reads the gRPC code and looks it up here.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from shared.errors import (
    DatabaseUnavailable,
    FailedPrecondition,
    IdempotencyConflict,
    InvalidArgument,
    JobNotFound,
    JobServiceError,
    PermissionDenied,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    SchemaOutOfDate,
    TooManyRequests,
    TypeLimitsNotFound,
    Unauthenticated,
)

__all__ = ["DOMAIN_ERROR_CODES", "ERROR_DOMAIN", "GRPC_TO_HTTP", "http_status", "status_for"]

ERROR_DOMAIN = "jobs.v1"

DOMAIN_ERROR_CODES: dict[type[JobServiceError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    JobNotFound: grpc.StatusCode.NOT_FOUND,
    IdempotencyConflict: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    DatabaseUnavailable: grpc.StatusCode.UNAVAILABLE,
    SchemaOutOfDate: grpc.StatusCode.FAILED_PRECONDITION,
    ScheduleNotFound: grpc.StatusCode.NOT_FOUND,
    ScheduleAlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    TypeLimitsNotFound: grpc.StatusCode.NOT_FOUND,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    TooManyRequests: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

# As grpc-gateway and Google's HTTP APIs map them.
GRPC_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


def grpc_code(error: JobServiceError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in DOMAIN_ERROR_CODES:
            return DOMAIN_ERROR_CODES[cls]
    return grpc.StatusCode.INTERNAL


def http_status(code: grpc.StatusCode) -> int:
    return GRPC_TO_HTTP.get(code, 500)


def status_for(error: JobServiceError) -> grpc.Status:
    """A rich gRPC status (AIP-193): canonical code, message, ErrorInfo and, for bad fields, BadRequest;
    for a refused role, ErrorInfo's metadata names the role needed; for a rate limit, RetryInfo (the REST
    shim turns it into Retry-After)."""
    code = grpc_code(error)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    details: list[Message] = [info]
    if isinstance(error, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.description)
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    elif isinstance(error, PermissionDenied) and error.needed:
        info.metadata["needed_role"] = error.needed
    elif isinstance(error, TooManyRequests):
        details.append(error_details_pb2.RetryInfo(retry_delay=Duration(seconds=error.retry_after_seconds)))
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    proto_status = status_pb2.Status(code=code.value[0], message=error.message, details=packed)
    return rpc_status.to_status(proto_status)


def internal_status(message: str = "internal error") -> grpc.Status:
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message=message))
