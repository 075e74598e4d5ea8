"""Cross-cutting concerns of every RPC: bearer-token auth, a server span joined to the caller's trace
(W3C traceparent metadata), domain errors as rich gRPC statuses (services/api/errors.py), unexpected
errors as INTERNAL without leaking details, the request timeout, and counts and latency by method and
code.

Each method handler is wrapped once, when its service is registered (``InstrumentedServer``), rather
than by a grpc.aio ServerInterceptor: an interceptor runs an extra coroutine chain and builds a new
handler on every call, which cost about a sixth of unary SubmitJob throughput (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.api import metrics
from services.api.auth import TokenChecker
from services.api.errors import grpc_code, internal_status, status_for
from shared.errors import DatabaseUnavailable, JobServiceError
from shared.telemetry import context_from_carrier

__all__ = ["InstrumentedServer"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer("services.api")
SERVICE = "jobs.v1.JobService"


class InstrumentedServer:
    """Stands in for a grpc.aio server while services register (``add_XServicer_to_server(servicer,
    InstrumentedServer(...))``) and registers each of their method handlers on the real server wrapped
    with auth, tracing, error mapping and metrics. (Not ``reflection.enable_server_reflection``: it checks
    the server's type; server.py registers reflection's servicer directly.)"""

    def __init__(self, server: grpc.aio.Server, tokens: TokenChecker, request_timeout_seconds: float | None) -> None:
        self._server = server
        self._tokens = tokens
        self._timeout = request_timeout_seconds

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(
            service, {name: self.wrap(f"/{service}/{name}", handler) for name, handler in handlers.items()}
        )

    def add_generic_rpc_handlers(self, generic_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([_WrappedGenericHandler(self, handler) for handler in generic_handlers])

    def wrap(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` of ``full_method`` (``/package.Service/Method``) with auth, tracing, errors and metrics."""
        method = full_method.rsplit("/", 1)[-1]
        checked = self._tokens.required_for(full_method)
        if handler.unary_unary is not None:
            behaviour = _wrap_unary(method, handler.unary_unary, self._timeout)
            return grpc.unary_unary_rpc_method_handler(
                self._authenticated(full_method, behaviour) if checked else behaviour,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            stream = _wrap_stream(method, handler.unary_stream)
            return grpc.unary_stream_rpc_method_handler(
                self._authenticated_stream(full_method, stream) if checked else stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None and checked:  # server reflection
            return grpc.stream_stream_rpc_method_handler(
                self._authenticated_stream(full_method, handler.stream_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _allowed(self, full_method: str, context: grpc.aio.ServicerContext) -> bool:
        authorization = next(
            (value for key, value in context.invocation_metadata() or () if key == "authorization"), None
        )
        return self._tokens.allows(full_method, authorization)

    def _authenticated(self, full_method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        method = full_method.rsplit("/", 1)[-1]

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if not self._allowed(full_method, context):
                await _refuse(method, context)
            return await behaviour(request, context)

        return unary

    def _authenticated_stream(self, full_method: str, behaviour: Callable[..., AsyncIterator[Any]]) -> Any:
        method = full_method.rsplit("/", 1)[-1]

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if not self._allowed(full_method, context):
                await _refuse(method, context)
            async for item in behaviour(request, context):
                yield item

        return stream


class _WrappedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler (reflection registers one) whose method handlers are wrapped the first time
    each method is looked up. Only methods it serves are remembered: a client calling made-up method
    names must not grow the cache."""

    def __init__(self, server: InstrumentedServer, inner: grpc.GenericRpcHandler) -> None:
        self._server = server
        self._inner = inner
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = self._inner.service(handler_call_details)
            if handler is None:
                return None
            wrapped = self._wrapped[method] = self._server.wrap(method, handler)
        return wrapped


async def _refuse(method: str, context: grpc.aio.ServicerContext) -> None:
    metrics.RPC_HANDLED.labels(method, "UNAUTHENTICATED").inc()
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid 'authorization: Bearer <token>' is required")


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
                # asyncio.timeout, not wait_for: no second task per call.
                async with asyncio.timeout(timeout):
                    return await behaviour(request, context)
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
