"""The REST shim: HTTP routes derived from the proto's google.api.http annotations, calling the servicer's
methods in-process through the same instrumentation wrapper as gRPC calls (services/api/instrumentation.py:
auth, deadline, span, metrics, error mapping), with no second RPC stack.

Before any byte of a body is read, the caller must be admitted (401 with ``WWW-Authenticate: Bearer``),
its Content-Length must be within MAX_MESSAGE_BYTES (413) and, when the route takes a body, its
Content-Type must be application/json (415), so that a cross-site "simple" POST creates nothing. The body
must then arrive within HTTP_BODY_TIMEOUT_SECONDS (408); a large one is parsed by a worker process.

JSON is protobuf's JSON mapping with the proto's snake_case names, plus what the original service's
clients rely on: every field present (unset ones as null), int64 as numbers, payloads as written,
and timestamps without an offset read as UTC.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import logging
import math
import multiprocessing
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import grpc
from aiohttp import web
from google.api import annotations_pb2
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from prometheus_client import CONTENT_TYPE_LATEST

from services.api.auth import TokenChecker
from services.api.console import add_console_routes
from services.api.errors import http_status, status_for
from services.api.pending import PendingRequest
from shared.errors import JobServiceError
from shared.structs import find_inexact_integer, struct_to_dict

if TYPE_CHECKING:  # not at run time: importing this module must not register the api's metrics
    from services.api.instrumentation import InstrumentedMethod, InstrumentedServer

__all__ = ["RestContext", "RestLimits", "Route", "build_rest_app", "routes_for_service"]

log = logging.getLogger(__name__)

# Headers a REST call passes to the instrumentation wrapper as its invocation metadata.
FORWARDED_HEADERS = ("authorization", "traceparent", "tracestate", "grpc-timeout")
# Bodies and replies larger than this are turned from and into JSON by JsonWorkers, not by the api.
INLINE_BYTES = 64 * 1024
JSON_WORKER_PROCESSES = 1
T = TypeVar("T")
_TOO_LARGE = grpc.StatusCode.RESOURCE_EXHAUSTED
_TEMPLATE_VARIABLE = re.compile(r"\{(\w+)\}")
_NAIVE_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
_GRPC_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


@dataclass(frozen=True)
class Route:
    """One RPC as an HTTP route, read from its google.api.http rule."""

    rpc: MethodDescriptor
    http_method: str
    template: str
    body: str
    response_body: str

    @property
    def path_fields(self) -> list[str]:
        return _TEMPLATE_VARIABLE.findall(self.template)

    @property
    def aiohttp_path(self) -> str:
        # A path variable stops at '/' and ':' so that /jobs/{id} and /jobs/{id}:cancel differ.
        return _TEMPLATE_VARIABLE.sub(lambda m: "{" + m.group(1) + ":[^/:]+}", self.template)

    @property
    def streaming(self) -> bool:
        return bool(self.rpc.server_streaming)


def routes_for_service(service: ServiceDescriptor) -> list[Route]:
    routes = []
    for rpc in service.methods:
        rule = rpc.GetOptions().Extensions[annotations_pb2.http]
        pattern = rule.WhichOneof("pattern")
        if pattern is None or pattern == "custom":
            continue
        routes.append(Route(rpc, pattern.upper(), getattr(rule, pattern), rule.body, rule.response_body))
    return routes


class BadRequest(Exception):
    """A request that cannot be read as its method's message; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)  # both: it is pickled back from a JSON worker process
        self.field = field
        self.message = message


def error_body(http: int, code: grpc.StatusCode, message: str, details: list[Any]) -> dict[str, Any]:
    return {"code": http, "status": code.name, "message": message, "details": details}


def bad_request_metadata(error: BadRequest) -> tuple[tuple[str, bytes], ...]:
    """A BadRequest as the trailing metadata of an INVALID_ARGUMENT status: one field violation."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=error.message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)


def _details(trailing_metadata: Any) -> list[Any]:
    """The rich details (ErrorInfo, BadRequest, RetryInfo...) a status carries in its trailing metadata."""
    for key, value in trailing_metadata or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            return list(status_pb2.Status.FromString(value).details)
    return []


def status_body(code: grpc.StatusCode, message: str, trailing_metadata: Any, http: int | None = None) -> dict[str, Any]:
    """The JSON error of a gRPC status, its HTTP status from errors.py's table unless ``http`` is given."""
    details = [json_format.MessageToDict(detail) for detail in _details(trailing_metadata)]
    return error_body(http or http_status(code), code, message or code.name, details)


def status_response(
    code: grpc.StatusCode, message: str, trailing_metadata: Any = (), http: int | None = None
) -> web.Response:
    """``status_body`` as a response; a RetryInfo detail (a rate limit) becomes Retry-After, and a 401
    names the scheme it wants (``WWW-Authenticate: Bearer``)."""
    headers = {}
    for detail in _details(trailing_metadata):
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            headers["Retry-After"] = str(max(1, retry.retry_delay.seconds))
    if code == grpc.StatusCode.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = "Bearer"
    body = status_body(code, message, trailing_metadata, http)
    return web.json_response(body, status=body["code"], headers=headers)


def domain_error_response(error: JobServiceError) -> web.Response:
    status = status_for(error)
    return status_response(status.code, status.details, status.trailing_metadata)


def _closing(request: web.Request, response: web.Response) -> web.Response:
    """``response`` to a request refused before its body was read: the connection closes after it. What
    the client still sends is drained and dropped for a few seconds first (aiohttp's lingering close),
    never parsed or kept, so that the client can read the refusal rather than meet a reset."""
    if request.body_exists and not request.content.is_eof():
        response.force_close()
    return response


def _json_text(message: Message) -> str:
    return json.dumps(message_to_json(message))


def _prepare(value: Any, descriptor: Descriptor, path: str = "") -> Any:
    """A request's JSON made ready for json_format: times without an offset read as UTC (the original
    service accepted "2026-02-01T15:00:00"), and a payload integer that a Struct (doubles) cannot hold
    exactly refused, naming it (``jobs[2].payload.n``), rather than stored rounded."""
    if not isinstance(value, dict):
        return value
    for field in descriptor.fields:
        item = value.get(field.name, value.get(field.json_name))
        if field.message_type is None or item is None:
            continue
        key = field.name if field.name in value else field.json_name
        name = path + field.name
        if field.message_type.full_name == "google.protobuf.Timestamp":
            if isinstance(item, str) and _NAIVE_TIMESTAMP.match(item):
                value[key] = item + "Z"
        elif field.message_type.full_name == "google.protobuf.Struct":
            inexact = find_inexact_integer(item, name)
            if inexact is not None:
                raise BadRequest(
                    inexact,
                    "is an integer beyond ±2^53 (9007199254740992), which a payload cannot store exactly "
                    "(its numbers are doubles); send it as a string",
                )
        elif field.message_type.full_name.startswith("jobs."):
            if field.is_repeated and isinstance(item, list):
                value[key] = [_prepare(x, field.message_type, f"{name}[{i}].") for i, x in enumerate(item)]
            else:
                value[key] = _prepare(item, field.message_type, name + ".")
    return value


def message_to_json(message: Message) -> dict[str, Any]:
    """Protobuf JSON with the service's conventions (see the module docstring): every field in declaration
    order, unset ones as null (or their default, for fields without presence), int64 as numbers, payloads
    with their integers intact. The same as json_format.MessageToDict with those options and a pass over
    its result, at a fraction of the cost: a walk of a message's fields by a plan made once per type."""
    descriptor: Any = message.DESCRIPTOR
    plan = _PLANS.get(descriptor.full_name) or _plan(descriptor)
    present = {field.name: value for field, value in message.ListFields()}
    return {
        name: convert(getattr(message, name)) if always else convert(present[name]) if name in present else unset
        for name, convert, unset, always in plan
    }


# Per message type: (field name, converter of a set value, value when unset, convert even when unset).
_Plan = list[tuple[str, Callable[[Any], Any], Any, bool]]
_PLANS: dict[str, _Plan] = {}


def _plan(descriptor: Descriptor) -> _Plan:
    plan: _Plan = []
    for field in descriptor.fields:
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            plan.append((field.name, _map_of(_converter(nested.fields_by_name["value"])), None, True))
        elif field.is_repeated:
            plan.append((field.name, _list_of(_converter(field)), None, True))
        elif field.has_presence:
            plan.append((field.name, _converter(field), None, False))
        else:
            convert = _converter(field)
            plan.append((field.name, convert, convert(field.default_value), False))
    _PLANS[descriptor.full_name] = plan
    return plan


def _converter(field: FieldDescriptor) -> Callable[[Any], Any]:
    """How one value of ``field`` is written (json_format's rules)."""
    nested = field.message_type
    if nested is not None:
        if nested.full_name == "google.protobuf.Struct":
            return struct_to_dict
        if nested.full_name == "google.protobuf.Timestamp":
            return lambda value: value.ToJsonString()
        if nested.full_name.startswith("jobs."):
            return message_to_json
        return lambda value: json_format.MessageToDict(value, preserving_proto_field_name=True)
    if field.enum_type is not None:
        names = {number: value.name for number, value in field.enum_type.values_by_number.items()}
        return lambda value: names.get(value, value)
    if field.cpp_type in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64):
        return _int64
    if field.type == FieldDescriptor.TYPE_DOUBLE:
        return _float
    if field.type == FieldDescriptor.TYPE_FLOAT:
        return lambda value: _float(type_checkers.ToShortestFloat(value))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return lambda value: base64.b64encode(value).decode()
    return _same


def _map_of(convert: Callable[[Any], Any]) -> Callable[[Any], dict[str, Any]]:
    return lambda entries: {_map_key(key): convert(value) for key, value in entries.items()}


def _list_of(convert: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    return lambda items: [convert(item) for item in items]


def _same(value: Any) -> Any:
    return value


def _int64(value: int) -> int | str:
    """A number, unless a double would not hold it exactly: then a string, as protobuf's JSON has it."""
    return value if float(value) == value else str(value)


def _float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _map_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


class RestContext:
    """A REST call's side of what the instrumentation wrapper reads of a gRPC ServicerContext: the
    forwarded headers as invocation metadata, the client's address as its peer, the deadline of a
    ``grpc-timeout`` header, and the status an ``abort`` sets. Header values gRPC metadata could not carry
    (non-ASCII) are left out, as if absent: a malformed traceparent starts a new trace, a malformed
    authorization is no token."""

    __slots__ = ("_deadline", "_metadata", "_peer", "http", "status")

    def __init__(self, headers: Mapping[str, str], peer: str | None = None) -> None:
        self._metadata = tuple(
            (name, value) for name in FORWARDED_HEADERS if (value := headers.get(name)) is not None and value.isascii()
        )
        self._peer = peer or ""
        timeout = grpc_timeout_seconds(headers.get("grpc-timeout"))
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self.status: tuple[grpc.StatusCode, str, Any] | None = None
        self.http: int | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def code(self) -> grpc.StatusCode | None:
        return None if self.status is None else self.status[0]

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        self.status = (code, details, trailing_metadata)
        raise grpc.aio.AbortError()

    async def refuse(self, http: int, code: grpc.StatusCode, message: str) -> NoReturn:
        """Abort with an HTTP status of the transport's own (408, 413, 415) rather than the table's."""
        self.http = http
        await self.abort(code, message)

    def response(self) -> web.Response:
        """The JSON error of the status ``abort`` set."""
        assert self.status is not None
        return status_response(*self.status, http=self.http)


def grpc_timeout_seconds(value: str | None) -> float | None:
    """A ``grpc-timeout`` header's seconds; None when absent or malformed (ignored, as gRPC ignores it)."""
    match = _GRPC_TIMEOUT.match(value) if value else None
    return int(match.group(1)) * _TIMEOUT_UNITS[match.group(2)] if match else None


@dataclass(frozen=True)
class RestLimits:
    """How much a REST request may send, and how long it may take to send it."""

    max_message_bytes: int  # request body, and reply (as protobuf), like the gRPC message limit
    body_timeout_seconds: float


class Refusal(Exception):
    """A request refused before its body is read or parsed (408, 413, 415)."""

    def __init__(self, status: int, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def request_message(route: Route, body: bytes, query: Sequence[tuple[str, str]], path: Mapping[str, str]) -> Message:
    """The request message of ``route`` from the body, query parameters and path variables of a call;
    BadRequest names the field that cannot be read."""
    data: dict[str, Any] = {}
    if route.body:
        if body.strip():
            try:
                parsed = json.loads(body)
                # JSON may escape lone surrogates (\ud800) that no protobuf string can hold.
                if b"\\u" in body:
                    json.dumps(parsed, ensure_ascii=False).encode()
            except RecursionError:
                raise BadRequest("body", "JSON is nested too deeply") from None
            except UnicodeEncodeError:
                raise BadRequest(
                    "body", "contains a lone UTF-16 surrogate escape, which is not valid Unicode"
                ) from None
            except (ValueError, UnicodeDecodeError) as exc:
                raise BadRequest("body", f"malformed JSON: {exc}") from None
            if not isinstance(parsed, dict) and route.body == "*":
                raise BadRequest("body", "the request body must be a JSON object")
            if route.body == "*":
                data = parsed
            else:
                data[route.body] = parsed
    elif body.strip():
        raise BadRequest("body", f"{route.http_method} {route.template} takes no request body")
    if not route.body:
        values: dict[str, list[str]] = {}
        for key, value in query:
            values.setdefault(key, []).append(value)
        for key, given in values.items():
            field = route.rpc.input_type.fields_by_name.get(key)
            data[key] = given if field is not None and field.is_repeated else given[-1]
    for name in route.path_fields:
        data[name] = path[name]
    try:
        _prepare(data, route.rpc.input_type)
    except RecursionError:
        raise BadRequest("body", "JSON is nested too deeply") from None
    message = message_factory.GetMessageClass(route.rpc.input_type)()
    try:
        json_format.ParseDict(data, message)
    except json_format.ParseError as exc:
        raise _describe_parse_error(str(exc), route.rpc.input_type) from None
    except (ValueError, TypeError, RecursionError, SystemError) as exc:
        raise BadRequest("body", f"cannot be read as {route.rpc.input_type.name}: {exc}") from None
    return message


class JsonWorkers:
    """Worker processes that turn large bodies into messages and large replies into JSON.

    Not the event loop, and not a thread of the api either: json.loads and json.dumps hold the GIL
    throughout (half a second for 16 MB here), and json_format walks a message in Python (16 s for a
    16 MB body of a million numbers). A worker gets the bytes and sends back the serialized message or
    the JSON text; the api only runs protobuf's C parser or serializer on them. Started on first use.
    """

    def __init__(self, service: ServiceDescriptor, processes: int = JSON_WORKER_PROCESSES) -> None:
        # The generated module that defines the service: a worker imports it to find the descriptors.
        self._module = next(
            name for name, module in list(sys.modules.items()) if getattr(module, "DESCRIPTOR", None) is service.file
        )
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._processes,
                mp_context=multiprocessing.get_context("spawn"),  # never fork a process that runs gRPC
                initializer=importlib.import_module,
                initargs=(self._module,),
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
        except BrokenProcessPool:
            self._pool = None  # a worker died (killed, out of memory): the next call starts new ones
            raise

    async def request_message(
        self, route: Route, body: bytes, query: Sequence[tuple[str, str]], path: Mapping[str, str]
    ) -> Message:
        data = await self._run(_request_message_bytes, route.rpc.full_name, body, list(query), dict(path))
        return message_factory.GetMessageClass(route.rpc.input_type).FromString(data)

    async def json_text(self, message: Message) -> str:
        descriptor: Any = message.DESCRIPTOR
        return await self._run(_json_text_of, descriptor.full_name, message.SerializeToString())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _request_message_bytes(method: str, body: bytes, query: list[tuple[str, str]], path: dict[str, str]) -> bytes:
    """In a JSON worker: ``request_message`` of the route of ``method`` (its full name), serialized."""
    rpc = descriptor_pool.Default().FindMethodByName(method)
    (route,) = [route for route in routes_for_service(rpc.containing_service) if route.rpc.full_name == method]
    return request_message(route, body, query, path).SerializeToString()


def _json_text_of(message_type: str, data: bytes) -> str:
    """In a JSON worker: the JSON text of a serialized message of ``message_type`` (its full name)."""
    message_class = message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(message_type))
    return _json_text(message_class.FromString(data))


class RestRequest(PendingRequest):
    """A REST call's request message, which the instrumentation wrapper asks for once the caller is
    admitted: only then is the body checked (413, 415), read (408) and parsed (400)."""

    __slots__ = ("context", "gateway", "request", "route")

    def __init__(self, gateway: RestGateway, route: Route, request: web.Request, context: RestContext) -> None:
        self.gateway = gateway
        self.route = route
        self.request = request
        self.context = context

    async def load(self) -> Message:
        try:
            return await self.gateway.request_message(self.route, self.request)
        except Refusal as exc:
            await self.context.refuse(exc.status, exc.code, exc.message)
        except BadRequest as exc:
            await self.context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message, bad_request_metadata(exc))


class RestGateway:
    """Turns HTTP requests into calls of the instrumented servicer methods, in-process, and their
    results into JSON responses: the same wrapper as gRPC calls (auth, deadline, span, metrics, errors),
    without a second RPC stack."""

    def __init__(self, server: InstrumentedServer, service: ServiceDescriptor, limits: RestLimits) -> None:
        self.server = server
        self.service = service
        self.limits = limits
        self.routes = routes_for_service(service)
        self.workers = JsonWorkers(service)

    def add_routes(self, app: web.Application) -> None:
        for route in self.routes:
            method = self.server.methods[f"/{self.service.full_name}/{route.rpc.name}"]
            app.router.add_route(route.http_method, route.aiohttp_path, self._handler(route, method))

        async def close_workers(_: web.Application) -> None:
            self.workers.close()

        app.on_cleanup.append(close_workers)

    async def _body(self, route: Route, request: web.Request) -> bytes:
        """The request body, refused from its headers when too large or not JSON, and read within the
        body timeout: nothing is read before the caller was admitted."""
        if not request.body_exists:
            return b""
        limit = self.limits.max_message_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise Refusal(413, _TOO_LARGE, f"the request body is {length} bytes; at most {limit} are accepted")
        if route.body and request.content_type != "application/json":
            raise Refusal(
                415,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a request body must be JSON sent as Content-Type: application/json, not {request.content_type!r}",
            )
        seconds = self.limits.body_timeout_seconds
        try:
            async with asyncio.timeout(seconds):
                return await request.read()
        except TimeoutError:
            message = f"the request body took longer than {seconds:g} s to arrive"
            raise Refusal(408, grpc.StatusCode.DEADLINE_EXCEEDED, message) from None
        except web.HTTPRequestEntityTooLarge:  # no Content-Length (chunked): refused once the limit is passed
            raise Refusal(413, _TOO_LARGE, f"the request body is larger than {limit} bytes") from None

    async def request_message(self, route: Route, request: web.Request) -> Message:
        """The call's request message; Refusal or BadRequest when there is none."""
        body = await self._body(route, request)
        query = list(request.query.items())
        if len(body) > INLINE_BYTES:
            return await self.workers.request_message(route, body, query, request.match_info)
        return request_message(route, body, query, request.match_info)

    async def _json_text(self, message: Message) -> str:
        if message.ByteSize() > INLINE_BYTES:
            return await self.workers.json_text(message)
        return _json_text(message)

    async def _reply(self, reply: Message) -> web.Response:
        size = reply.ByteSize()
        if size > self.limits.max_message_bytes:
            limit = self.limits.max_message_bytes
            return status_response(_TOO_LARGE, f"the reply would be {size} bytes, more than {limit}: ask for less")
        return web.Response(text=await self._json_text(reply), content_type="application/json")

    def _handler(
        self, route: Route, method: InstrumentedMethod
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            context = RestContext(request.headers, request.remote)
            pending = RestRequest(self, route, request, context)
            try:
                if method.streaming:
                    return await self._stream(request, method.call(pending, context), context)
                reply = await method.call(pending, context)
            except grpc.aio.AbortError:
                return _closing(request, context.response())
            if route.response_body:
                reply = getattr(reply, route.response_body)
            return await self._reply(reply)

        return handle

    async def _stream(
        self, request: web.Request, replies: AsyncIterator[Message], context: RestContext
    ) -> web.StreamResponse:
        """Server streaming as newline-delimited JSON, one message per line; a failure after the first
        line is a last line ``{"error": ...}``."""
        response: web.StreamResponse | None = None
        try:
            async for item in replies:
                text = await self._json_text(item)
                if response is None:
                    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
                    await response.prepare(request)
                await response.write(text.encode() + b"\n")
        except grpc.aio.AbortError:
            if response is None:
                raise
            assert context.status is not None
            await response.write(json.dumps({"error": status_body(*context.status)}).encode() + b"\n")
        if response is None:
            return web.json_response([])
        await response.write_eof()
        return response


_UNKNOWN_FIELD = re.compile(r'has no field named "([^"]+)"')
_BAD_FIELD = re.compile(r"Failed to parse (\w+) field")
# Where json_format says the bad value is; a nested field's message ends with a period per level.
_AT_FIELD = re.compile(r'at "?\w+\.([\w\[\]]+(?:\.[\w\[\]]+)*)"?\.*$')


def _describe_parse_error(message: str, descriptor: Descriptor) -> BadRequest:
    """A json_format error as a BadRequest naming the field, in a sentence a person can act on."""
    unknown = _UNKNOWN_FIELD.search(message)
    if unknown:
        known = ", ".join(field.name for field in descriptor.fields)
        return BadRequest(unknown.group(1), f'unknown field "{unknown.group(1)}" (known fields: {known})')
    located = _AT_FIELD.search(message)
    if located:
        return BadRequest(located.group(1), message)
    bad = _BAD_FIELD.search(message)
    return BadRequest(bad.group(1) if bad else "body", message)


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@web.middleware
async def json_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    """Every failure answers in the same JSON shape, including aiohttp's own 404/405/413."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            404: grpc.StatusCode.NOT_FOUND,
            405: grpc.StatusCode.UNIMPLEMENTED,
            413: grpc.StatusCode.RESOURCE_EXHAUSTED,
        }.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT)
        message = exc.text if exc.status == 413 else f"{request.method} {request.path}: {exc.reason}"
        return web.json_response(error_body(exc.status, code, message or exc.reason, []), status=exc.status)
    except Exception:
        log.exception("REST %s %s failed unexpectedly", request.method, request.path)
        return web.json_response(error_body(500, grpc.StatusCode.INTERNAL, "internal error", []), status=500)


def build_rest_app(
    server: InstrumentedServer,
    service: ServiceDescriptor,
    limits: RestLimits,
    metrics_body: Callable[[], bytes],
    metrics_tokens: TokenChecker | None = None,
) -> web.Application:
    """The REST app over ``server``'s instrumented methods of ``service``; /metrics answers
    ``metrics_body()``, and ``metrics_tokens`` makes it need a token."""
    app = web.Application(client_max_size=limits.max_message_bytes, middlewares=[json_errors])
    app.router.add_get("/health", health)

    async def guarded_metrics(request: web.Request) -> web.Response:
        if metrics_tokens is not None:
            authorization = dict(RestContext(request.headers).invocation_metadata()).get("authorization")
            try:
                metrics_tokens.authorize("/metrics", authorization, request.remote or "")
            except JobServiceError as exc:
                return domain_error_response(exc)
        return web.Response(body=metrics_body(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", guarded_metrics)
    RestGateway(server, service, limits).add_routes(app)
    add_console_routes(app)  # /ui, /docs, /openapi.json
    return app
