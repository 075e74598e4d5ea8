"""The REST shim: HTTP routes derived from the proto's google.api.http annotations, forwarded over a
loopback gRPC channel so that the instrumentation of every RPC (errors, metrics, auth) applies to REST calls too.

JSON is protobuf's JSON mapping with the proto's snake_case names, plus what the original service's
clients rely on: every field present (unset ones as null), int64 as numbers, payloads as written,
and timestamps without an offset read as UTC.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web
from google.api import annotations_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import status_pb2
from prometheus_client import CONTENT_TYPE_LATEST

from services.api.auth import TokenChecker
from services.api.errors import http_status
from shared.structs import plain_numbers

__all__ = ["Route", "build_rest_app", "routes_for_service"]

log = logging.getLogger(__name__)

# Headers passed on to the gRPC call as metadata.
FORWARDED_HEADERS = ("authorization", "traceparent", "tracestate", "grpc-timeout")
_TEMPLATE_VARIABLE = re.compile(r"\{(\w+)\}")
_NAIVE_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")


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
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def error_body(http: int, code: grpc.StatusCode, message: str, details: list[Any]) -> dict[str, Any]:
    return {"code": http, "status": code.name, "message": message, "details": details}


def bad_request_response(error: BadRequest) -> web.Response:
    detail = {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": error.field, "description": error.message}],
    }
    body = error_body(400, grpc.StatusCode.INVALID_ARGUMENT, error.message, [detail])
    return web.json_response(body, status=400)


def rpc_error_response(error: grpc.aio.AioRpcError) -> web.Response:
    code = error.code()
    details: list[Any] = []
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            details = [json_format.MessageToDict(detail) for detail in status.details]
    message = error.details() or code.name
    status_code = http_status(code)
    return web.json_response(error_body(status_code, code, message, details), status=status_code)


def _fix_naive_timestamps(value: Any, descriptor: Descriptor) -> Any:
    """The original service accepted "2026-02-01T15:00:00": read such times as UTC."""
    if not isinstance(value, dict):
        return value
    for field in descriptor.fields:
        item = value.get(field.name, value.get(field.json_name))
        if field.message_type is None or item is None:
            continue
        key = field.name if field.name in value else field.json_name
        if field.message_type.full_name == "google.protobuf.Timestamp":
            if isinstance(item, str) and _NAIVE_TIMESTAMP.match(item):
                value[key] = item + "Z"
        elif field.message_type.full_name.startswith("jobs."):
            if field.is_repeated and isinstance(item, list):
                value[key] = [_fix_naive_timestamps(x, field.message_type) for x in item]
            else:
                value[key] = _fix_naive_timestamps(item, field.message_type)
    return value


def message_to_json(message: Message) -> dict[str, Any]:
    """Protobuf JSON with the service's conventions (see the module docstring)."""
    data = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )
    descriptor: Any = message.DESCRIPTOR
    return _complete(data, descriptor)


def _complete(data: dict[str, Any], descriptor: Descriptor) -> dict[str, Any]:
    """Every field in declaration order, unset ones as null, payloads with their integers intact."""
    complete: dict[str, Any] = {}
    for field in descriptor.fields:
        name = field.name
        nested = field.message_type
        if nested is not None and nested.full_name == "google.protobuf.Struct":
            complete[name] = plain_numbers(data[name]) if name in data else None
        elif nested is not None and nested.full_name.startswith("jobs.") and not nested.GetOptions().map_entry:
            if field.is_repeated:
                complete[name] = [_complete(item, nested) for item in data.get(name, [])]
            else:
                complete[name] = _complete(data[name], nested) if name in data else None
        else:
            complete[name] = data.get(name)
    return complete


class RestGateway:
    """Turns HTTP requests into RPCs on ``channel`` and RPC results into JSON responses."""

    def __init__(self, channel: grpc.aio.Channel, service: ServiceDescriptor) -> None:
        self.channel = channel
        self.service = service
        self.routes = routes_for_service(service)

    def add_routes(self, app: web.Application) -> None:
        for route in self.routes:
            app.router.add_route(route.http_method, route.aiohttp_path, self._handler(route))

    def _request_message(self, route: Route, request: web.Request, body: bytes) -> Message:
        message_class = message_factory.GetMessageClass(route.rpc.input_type)
        data: dict[str, Any] = {}
        if route.body:
            if body.strip():
                try:
                    parsed = json.loads(body)
                    # JSON may escape lone surrogates (\ud800) that no protobuf string can hold.
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
            for key in request.query:
                values = request.query.getall(key)
                field = route.rpc.input_type.fields_by_name.get(key)
                data[key] = values if field is not None and field.is_repeated else values[-1]
        for name in route.path_fields:
            data[name] = request.match_info[name]
        _fix_naive_timestamps(data, route.rpc.input_type)
        message = message_class()
        try:
            json_format.ParseDict(data, message)
        except json_format.ParseError as exc:
            raise _describe_parse_error(str(exc), route.rpc.input_type) from None
        except (ValueError, TypeError, RecursionError, SystemError) as exc:
            raise BadRequest("body", f"cannot be read as {route.rpc.input_type.name}: {exc}") from None
        return message

    def _handler(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        method_path = f"/{self.service.full_name}/{route.rpc.name}"
        response_class = message_factory.GetMessageClass(route.rpc.output_type)
        if route.streaming:
            stream_call = self.channel.unary_stream(
                method_path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_class.FromString,
            )
        else:
            unary_call = self.channel.unary_unary(
                method_path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_class.FromString,
            )

        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                message = self._request_message(route, request, await request.read())
            except BadRequest as exc:
                return bad_request_response(exc)
            metadata = tuple((name, request.headers[name]) for name in FORWARDED_HEADERS if name in request.headers)
            if route.streaming:
                return await self._stream(request, stream_call(message, metadata=metadata))
            try:
                reply = await unary_call(message, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                return rpc_error_response(exc)
            if route.response_body:
                reply = getattr(reply, route.response_body)
            return web.json_response(message_to_json(reply))

        return handle

    async def _stream(self, request: web.Request, call: Any) -> web.StreamResponse:
        """Server streaming as newline-delimited JSON, one message per line."""
        response: web.StreamResponse | None = None
        try:
            async for item in call:
                if response is None:
                    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
                    await response.prepare(request)
                await response.write(json.dumps(message_to_json(item)).encode() + b"\n")
        except grpc.aio.AioRpcError as exc:
            if response is None:
                return rpc_error_response(exc)
            error = rpc_error_response(exc)
            await response.write(json.dumps({"error": json.loads(error.text or "{}")}).encode() + b"\n")
        if response is None:
            return web.json_response([])
        await response.write_eof()
        return response


_UNKNOWN_FIELD = re.compile(r'has no field named "([^"]+)"')
_BAD_FIELD = re.compile(r"Failed to parse (\w+) field")
_AT_FIELD = re.compile(r'at "?\w+\.([\w\[\]]+(?:\.[\w\[\]]+)*)"?\.?$')


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
    channel: grpc.aio.Channel,
    service: ServiceDescriptor,
    max_body_bytes: int,
    metrics_body: Callable[[], bytes],
    metrics_tokens: TokenChecker | None = None,
) -> web.Application:
    """The REST app; /metrics answers ``metrics_body()``, and ``metrics_tokens`` makes it need a token."""
    app = web.Application(client_max_size=max_body_bytes, middlewares=[json_errors])
    app.router.add_get("/health", health)

    async def guarded_metrics(request: web.Request) -> web.Response:
        if metrics_tokens is not None and not metrics_tokens.allows("/metrics", request.headers.get("Authorization")):
            body = error_body(401, grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token is required", [])
            return web.json_response(body, status=401)
        return web.Response(body=metrics_body(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", guarded_metrics)
    RestGateway(channel, service).add_routes(app)
    from services.api.console import add_console_routes  # here: the console imports this module

    add_console_routes(app, service)  # /ui, /docs, /openapi.json
    return app
