"""Cross-cutting concerns of every RPC, in one server interceptor: a server span joined to the caller's
trace (W3C traceparent metadata), domain errors as rich gRPC statuses (services/api/errors.py),
unexpected errors as INTERNAL without leaking details, and counts and latency by method and code."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.api import metrics
from services.api.auth import TokenChecker
from services.api.errors import grpc_code, internal_status, status_for
from shared.errors import DatabaseUnavailable, JobServiceError
from shared.telemetry import context_from_carrier

__all__ = ["ServiceInterceptor"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer("services.api")
SERVICE = "jobs.v1.JobService"


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: TokenChecker, request_timeout_seconds: float | None = None) -> None:
        self.tokens = tokens
        self.request_timeout_seconds = request_timeout_seconds

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        authorization = next(
            (value for key, value in handler_call_details.invocation_metadata or () if key == "authorization"),
            None,
        )
        if not self.tokens.allows(handler_call_details.method, authorization):
            return _refuse(method, handler)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary, self.request_timeout_seconds),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _refuse(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape that answers UNAUTHENTICATED without running the method."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        metrics.RPC_HANDLED.labels(method, "UNAUTHENTICATED").inc()
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid 'authorization: Bearer <token>' is required")

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await refuse(request, context)
        yield  # pragma: no cover - abort raised above

    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            refuse_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None:

        async def refuse_bidi(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await refuse(None, context)
            yield  # pragma: no cover - abort raised above

        return grpc.stream_stream_rpc_method_handler(
            refuse_bidi,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.unary_unary_rpc_method_handler(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


async def _fail(context: grpc.aio.ServicerContext, method: str, error: Exception) -> None:
    """Abort the call with the status ``error`` maps to."""
    if isinstance(error, JobServiceError):
        if isinstance(error, DatabaseUnavailable):
            metrics.DATABASE_ERRORS.inc()
            log.warning("%s: %s", method, error.message)
        status = status_for(error)
    else:
        log.exception("%s failed unexpectedly", method)
        status = internal_status()
    await context.abort(status.code, status.details, status.trailing_metadata)


def _code_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    if error is None:
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else "OK"
    if isinstance(error, JobServiceError):
        return grpc_code(error).name
    if isinstance(error, TimeoutError):
        return "DEADLINE_EXCEEDED"
    if isinstance(error, grpc.aio.AbortError | grpc.RpcError):
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return "INTERNAL"


def _start_span(method: str, context: grpc.aio.ServicerContext) -> trace.Span:
    return tracer.start_span(
        f"{SERVICE}/{method}",
        context=context_from_carrier(context.invocation_metadata()),
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": method},
    )


def _finish(span: trace.Span, method: str, code: str, started: float) -> None:
    metrics.RPC_SECONDS.labels(method).observe(time.perf_counter() - started)
    metrics.RPC_HANDLED.labels(method, code).inc()
    span.set_attribute("rpc.grpc.status_code", grpc.StatusCode[code].value[0])
    if code not in {"OK", "NOT_FOUND", "ALREADY_EXISTS", "INVALID_ARGUMENT", "FAILED_PRECONDITION"}:
        span.set_status(Status(StatusCode.ERROR, code))
    span.end()


def _wrap_unary(method: str, behaviour: Callable[..., Any], timeout: float | None = None) -> Callable[..., Any]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        span = _start_span(method, context)
        error: BaseException | None = None
        try:
            with trace.use_span(span, end_on_exit=False):
                if timeout is None:
                    return await behaviour(request, context)
                return await asyncio.wait_for(behaviour(request, context), timeout)
        except TimeoutError as exc:
            error = exc
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"{method} took longer than {timeout:g} s")
        except (grpc.aio.AbortError, grpc.RpcError) as exc:
            error = exc
            raise
        except Exception as exc:
            error = exc
            await _fail(context, method, exc)
        finally:
            _finish(span, method, _code_of(context, error), started)

    return unary


def _wrap_stream(method: str, behaviour: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        started = time.perf_counter()
        # Not made current: an async generator's context does not survive its yields.
        span = _start_span(method, context)
        error: BaseException | None = None
        try:
            async for item in behaviour(request, context):
                yield item
        except (grpc.aio.AbortError, grpc.RpcError) as exc:
            error = exc
            raise
        except Exception as exc:
            error = exc
            await _fail(context, method, exc)
        finally:
            _finish(span, method, _code_of(context, error), started)

    return stream
