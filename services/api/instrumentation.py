"""Cross-cutting concerns of every RPC, whether it arrives over gRPC or through the REST shim: bearer-token
auth and the caller's role (one call into services/api/auth.py), the change log (services/api/audit.py),
a request that is not valid protobuf as INVALID_ARGUMENT, the refusal of NUL characters in any request
string, a server span joined to the caller's trace (W3C traceparent metadata), domain errors as rich gRPC
statuses (services/api/errors.py), unexpected errors as INTERNAL without leaking details, the deadline
(the client's, capped by REQUEST_TIMEOUT_SECONDS), and counts and latency by method and code.

Each method handler is wrapped once, when its service is registered (``InstrumentedServer``), rather
than by a grpc.aio ServerInterceptor: an interceptor runs an extra coroutine chain and builds a new
handler on every call, which cost about a sixth of unary SubmitJob throughput (docs/benchmarks.md).
The REST shim calls the same wrapped methods in-process (``InstrumentedServer.methods``) with a context
of its own (services/api/rest.py, ``RestContext``) that offers what this module reads of a
``grpc.aio.ServicerContext``: ``invocation_metadata()``, ``peer()``, ``time_remaining()``, ``abort()``
and ``code()``; its request is a PendingRequest whose body is read only once the caller is admitted.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.api import audit, metrics
from services.api.auth import OPEN_METHODS, Principal, TokenChecker, client_address, set_current_caller
from services.api.convert import refuse_nul_characters
from services.api.errors import grpc_code, internal_status, status_for
from services.api.pending import PendingRequest
from shared.database import describe_failed_statement
from shared.errors import DatabaseUnavailable, InvalidArgument, JobServiceError
from shared.telemetry import context_from_carrier

__all__ = ["CallContext", "InstrumentedMethod", "InstrumentedServer"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer("services.api")
SERVICE = "jobs.v1.JobService"


class CallContext(Protocol):
    """What the wrapper reads of a call's context: ``grpc.aio.ServicerContext``, or the REST shim's."""

    def invocation_metadata(self) -> Any: ...

    def peer(self) -> str: ...

    def time_remaining(self) -> float | None: ...

    def code(self) -> Any: ...

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> Any: ...


@dataclass(frozen=True)
class InstrumentedMethod:
    """One wrapped RPC as the REST shim calls it: ``call(request, context)``, a coroutine, or an async
    iterator of replies when ``streaming``."""

    full_name: str
    streaming: bool
    call: Callable[..., Any]


class _MalformedRequest(PendingRequest):
    """What the request deserializer gives for bytes that are not the method's message: once the caller
    is admitted, INVALID_ARGUMENT (grpc itself would answer UNKNOWN, naming the exception's class)."""

    __slots__ = ("error",)

    def __init__(self, error: InvalidArgument) -> None:
        self.error = error

    async def load(self) -> Any:
        raise self.error


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, ValueError, TypeError) as exc:
            return _MalformedRequest(InvalidArgument("request", f"is not a valid protobuf message: {exc}"))

    return deserialize


class InstrumentedServer:
    """Stands in for a grpc.aio server while services register (``add_XServicer_to_server(servicer,
    InstrumentedServer(...))``) and registers each of their method handlers on the real server wrapped
    with auth, tracing, error mapping and metrics. (Not ``reflection.enable_server_reflection``: it checks
    the server's type; server.py registers reflection's servicer directly.)

    ``methods`` keeps the wrapped unary and server-streaming methods by full name, for the REST shim."""

    def __init__(
        self,
        server: grpc.aio.Server,
        tokens: TokenChecker,
        request_timeout_seconds: float | None,
        method_timeouts: Mapping[str, float] | None = None,
    ) -> None:
        """``request_timeout_seconds`` bounds every unary call but those ``method_timeouts`` names
        (``{"CancelJobs": 600.0}``)."""
        self._server = server
        self._tokens = tokens
        self._timeout = request_timeout_seconds
        self._method_timeouts = dict(method_timeouts or {})
        self.methods: dict[str, InstrumentedMethod] = {}

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(
            service, {name: self.wrap(f"/{service}/{name}", handler) for name, handler in handlers.items()}
        )

    def add_generic_rpc_handlers(self, generic_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([_WrappedGenericHandler(self, handler) for handler in generic_handlers])

    def wrap(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` of ``full_method`` (``/package.Service/Method``) with auth, tracing, errors and metrics."""
        method = full_method.rsplit("/", 1)[-1]
        gate = None if full_method in OPEN_METHODS else _Gate(self._tokens, full_method)
        if handler.unary_unary is not None:
            unary = _wrap_unary(method, handler.unary_unary, gate, self._method_timeouts.get(method, self._timeout))
            self.methods[full_method] = InstrumentedMethod(full_method, False, unary)
            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            if inspect.isasyncgenfunction(handler.unary_stream):
                stream = _wrap_stream(method, handler.unary_stream, gate)
                self.methods[full_method] = InstrumentedMethod(full_method, True, stream)
            else:
                # Writes its replies with context.write() (grpc.health.v1.Health/Watch): a coroutine,
                # wrapped like a unary call but with no time limit of the server's.
                stream = _wrap_unary(method, handler.unary_stream, gate, None)
            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None and gate is not None:  # server reflection
            return grpc.stream_stream_rpc_method_handler(
                _admitted_stream(method, handler.stream_stream, gate),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


class _Gate:
    """Who may call one method: ``admit`` authorizes each call (services/api/auth.py) and makes its
    caller current; calls that change what others submitted are logged (services/api/audit.py)."""

    def __init__(self, tokens: TokenChecker, full_method: str) -> None:
        self.tokens = tokens
        self.full_method = full_method
        self.audited = audit.is_change(full_method)

    def admit(self, context: CallContext) -> Principal:
        if not self.tokens.enabled:
            return self.tokens.authorize(self.full_method, None)
        authorization = next(
            (value for key, value in context.invocation_metadata() or () if key == "authorization"), None
        )
        caller = self.tokens.authorize(self.full_method, authorization, client_address(context.peer() or ""))
        set_current_caller(caller)
        return caller


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


async def _fail(context: CallContext, method: str, error: Exception) -> None:
    """Abort the call with the status ``error`` maps to."""
    if isinstance(error, JobServiceError):
        if isinstance(error, DatabaseUnavailable):  # counted by the gateway (database_errors_total)
            log.warning("%s: %s", method, error.message)
        status = status_for(error)
    elif (statement := describe_failed_statement(error)) is not None:
        # Not log.exception: the driver's message would show the statement's values (client data).
        stack = "".join(traceback.format_tb(error.__traceback__))
        log.error("%s failed unexpectedly: %s\n%s", method, statement, stack)
        status = internal_status()
    else:
        log.exception("%s failed unexpectedly", method)
        status = internal_status()
    await context.abort(status.code, status.details, status.trailing_metadata)


def _code_of(context: CallContext, error: BaseException | None) -> str:
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


def _time_limit(context: CallContext, server_limit: float | None) -> float | None:
    """Seconds the call may still take: the client's deadline, capped by the server's limit."""
    remaining = context.time_remaining()
    if remaining is None:
        return server_limit
    return remaining if server_limit is None else min(remaining, server_limit)


async def _admit(gate: _Gate | None, request: Any, context: CallContext) -> tuple[Principal | None, Any]:
    """The caller, and then the request message: a PendingRequest is loaded only once the caller is in."""
    caller = gate.admit(context) if gate is not None else None
    if isinstance(request, PendingRequest):
        request = await request.load()
    refuse_nul_characters(request)
    return caller, request


def _audit(
    gate: _Gate | None, caller: Principal | None, error: BaseException | None, method: str, request: Any, code: str
) -> None:
    if gate is not None and gate.audited:
        message = None if isinstance(request, PendingRequest) else request  # never loaded: refused first
        audit.log_change(caller or getattr(error, "caller", None), method, message, code)


def _start_span(method: str, context: CallContext) -> trace.Span:
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


def _wrap_unary(
    method: str, behaviour: Callable[..., Any], gate: _Gate | None, timeout: float | None = None
) -> Callable[..., Any]:
    async def unary(request: Any, context: CallContext) -> Any:
        started = time.perf_counter()
        span = _start_span(method, context)
        error: BaseException | None = None
        caller = None
        limit = _time_limit(context, timeout)
        try:
            with trace.use_span(span, end_on_exit=False):
                caller, request = await _admit(gate, request, context)
                # asyncio.timeout, not wait_for: no second task per call.
                async with asyncio.timeout(limit):
                    return await behaviour(request, context)
        except TimeoutError as exc:
            error = exc
            took = f"longer than {limit:g} s" if limit is not None else "too long"
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"{method} took {took}")
        except (grpc.aio.AbortError, grpc.RpcError) as exc:
            error = exc
            raise
        except Exception as exc:
            error = exc
            await _fail(context, method, exc)
        finally:
            code = _code_of(context, error)
            _finish(span, method, code, started)
            _audit(gate, caller, error, method, request, code)

    return unary


def _wrap_stream(method: str, behaviour: Callable[..., AsyncIterator[Any]], gate: _Gate | None) -> Callable[..., Any]:
    async def stream(request: Any, context: CallContext) -> AsyncIterator[Any]:
        started = time.perf_counter()
        # Not made current: an async generator's context does not survive its yields.
        span = _start_span(method, context)
        error: BaseException | None = None
        caller = None
        try:
            caller, request = await _admit(gate, request, context)
            async for item in behaviour(request, context):
                yield item
        except (grpc.aio.AbortError, grpc.RpcError) as exc:
            error = exc
            raise
        except Exception as exc:
            error = exc
            await _fail(context, method, exc)
        finally:
            code = _code_of(context, error)
            _finish(span, method, code, started)
            _audit(gate, caller, error, method, request, code)

    return stream


def _admitted_stream(method: str, behaviour: Callable[..., AsyncIterator[Any]], gate: _Gate) -> Callable[..., Any]:
    """A bidirectional stream (server reflection) behind ``gate``."""

    async def stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            gate.admit(context)
        except JobServiceError as exc:
            metrics.RPC_HANDLED.labels(method, grpc_code(exc).name).inc()
            await _fail(context, method, exc)
        async for item in behaviour(requests, context):
            yield item

    return stream
