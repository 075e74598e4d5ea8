"""The OpenAPI 3.1 document of the REST shim, written by ``make proto`` next to the generated code.

Routes come from ``routes_for_service`` (the proto's google.api.http rules), shapes from the message
descriptors and descriptions from the proto's comments (protoc's source info), so nothing here is written
twice: a new RPC, field or enum value shows up in shared/proto/jobs/v1/openapi.json the next time
``make proto`` runs, and ``make proto-check`` fails while the committed file lags behind. The api serves
that file as it is (services/api/console); nothing here runs in the api process. The JSON described is the
shim's: snake_case names, every field present (fields with presence as null when unset), enums as bare
names, int64 as JSON numbers, Struct as a free-form object and Timestamp as an RFC 3339 string.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, ServiceDescriptor
from google.protobuf.descriptor_pb2 import EnumDescriptorProto, FileDescriptorProto

from services.api.errors import GRPC_TO_HTTP
from services.api.rest import Route, routes_for_service

__all__ = ["openapi_document", "source_comments"]

OPENAPI_VERSION = "3.1.0"
ERROR_SCHEMA = "Error"
# The error statuses every operation lists (the rest fall under "default").
ERROR_STATUSES = (400, 401, 404, 409, 503)

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_SINT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_SFIXED64: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "integer", "format": "int64", "minimum": 0},
    FieldDescriptor.TYPE_FIXED64: {"type": "integer", "format": "int64", "minimum": 0},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}

_WRAPPERS = {
    "google.protobuf.DoubleValue": FieldDescriptor.TYPE_DOUBLE,
    "google.protobuf.FloatValue": FieldDescriptor.TYPE_FLOAT,
    "google.protobuf.Int64Value": FieldDescriptor.TYPE_INT64,
    "google.protobuf.UInt64Value": FieldDescriptor.TYPE_UINT64,
    "google.protobuf.Int32Value": FieldDescriptor.TYPE_INT32,
    "google.protobuf.UInt32Value": FieldDescriptor.TYPE_UINT32,
    "google.protobuf.BoolValue": FieldDescriptor.TYPE_BOOL,
    "google.protobuf.StringValue": FieldDescriptor.TYPE_STRING,
    "google.protobuf.BytesValue": FieldDescriptor.TYPE_BYTES,
}

_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Struct": {
        "type": "object",
        "additionalProperties": True,
        "description": "Any JSON object.",
    },
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339; a time without an offset is read as UTC.",
        "examples": ["2026-12-01T15:00:00Z"],
    },
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$", "examples": ["1.5s"]},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
}


class _Builder:
    """Walks descriptors into ``components.schemas``, one schema per message and enum of the API."""

    def __init__(self, comments: dict[str, str]) -> None:
        self.comments = comments
        self.schemas: dict[str, Any] = {}

    def ref(self, full_name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{full_name}"}

    def enum(self, descriptor: EnumDescriptor) -> dict[str, Any]:
        name = descriptor.full_name
        if name not in self.schemas:
            lines = []
            # Enum values are named like siblings of their enum (C++ scoping rules).
            scope = name.rpartition(".")[0]
            for value in descriptor.values:
                note = self.comments.get(f"{scope}.{value.name}")
                lines.append(f"- `{value.name}`" + (f": {_one_line(note)}" if note else ""))
            description = self.comments.get(name, "")
            self.schemas[name] = {
                "type": "string",
                "enum": [value.name for value in descriptor.values],
                "description": "\n\n".join(part for part in (description, "\n".join(lines)) if part),
            }
        return self.ref(name)

    def message(self, descriptor: Descriptor) -> dict[str, Any]:
        name = descriptor.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name in _WRAPPERS:
            return {**_SCALARS[_WRAPPERS[name]], "nullable_": True}
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: a message may refer to itself
            self.schemas[name] = self.object_schema(descriptor, descriptor.fields, self.comments.get(name))
        return self.ref(name)

    def object_schema(
        self, descriptor: Descriptor, fields: Iterable[FieldDescriptor], description: str | None
    ) -> dict[str, Any]:
        properties = {field.name: self.field(field) for field in fields}
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if description:
            schema["description"] = description
        schema["title"] = descriptor.name
        return schema

    def value(self, field: FieldDescriptor) -> dict[str, Any]:
        """The schema of one value of ``field`` (an element, for repeated fields)."""
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        if field.message_type is not None:
            return self.message(field.message_type)
        return dict(_SCALARS[field.type])

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            schema: dict[str, Any] = {
                "type": "object",
                "additionalProperties": self.value(message.fields_by_name["value"]),
            }
        elif field.is_repeated:
            schema = {"type": "array", "items": self.value(field)}
        else:
            schema = self.value(field)
            nullable = schema.pop("nullable_", False) or field.has_presence
            if nullable:
                # The shim prints every field: one with presence is null while unset.
                schema = _nullable(schema)
        description = self.comments.get(field.full_name)
        if description:
            schema = {**schema, "description": description} if "$ref" not in schema else _described(schema, description)
        return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema or "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]} if schema else schema
    kind = schema["type"]
    return {**schema, "type": [*kind, "null"] if isinstance(kind, list) else [kind, "null"]}


def _described(schema: dict[str, Any], description: str) -> dict[str, Any]:
    # OpenAPI 3.1 allows siblings of $ref, but "description" there is what renderers show.
    return {**schema, "description": description}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _summary(text: str | None, fallback: str) -> str:
    if not text:
        return fallback
    first = _one_line(text).split(". ")[0].rstrip(".")
    return first or fallback


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "title": "Error",
        "description": "Every failure: the HTTP status, the gRPC code's name, a message naming the field at fault, "
        "and google.rpc details (ErrorInfo, BadRequest with fieldViolations).",
        "properties": {
            "code": {"type": "integer", "description": "The HTTP status."},
            "status": {"type": "string", "description": "The gRPC status code's name.", "examples": ["NOT_FOUND"]},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
        },
        "required": ["code", "status", "message", "details"],
    }


def _error_responses() -> dict[str, Any]:
    """One shared response per HTTP status the shim answers with, named after the gRPC codes behind it."""
    by_status: dict[int, list[str]] = {}
    for code, http in GRPC_TO_HTTP.items():
        if http >= 400:
            by_status.setdefault(http, []).append(code.name)
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}
    responses: dict[str, Any] = {}
    for http in ERROR_STATUSES:
        responses[f"Error{http}"] = {"description": " or ".join(sorted(by_status.get(http, []))), "content": content}
    responses["Error"] = {"description": "any other error", "content": content}
    return responses


def _error_refs() -> dict[str, Any]:
    refs: dict[str, Any] = {str(http): {"$ref": f"#/components/responses/Error{http}"} for http in ERROR_STATUSES}
    refs["default"] = {"$ref": "#/components/responses/Error"}
    return refs


def _operation(route: Route, builder: _Builder, service: ServiceDescriptor) -> dict[str, Any]:
    rpc = route.rpc
    request = rpc.input_type
    comment = builder.comments.get(rpc.full_name)
    path_fields = set(route.path_fields)
    parameters: list[dict[str, Any]] = []
    for name in route.path_fields:
        field = request.fields_by_name[name]
        parameters.append(_parameter(field, "path", builder, required=True))
    # As the shim reads them: without a body, the other top-level scalar fields (and timestamps, written
    # as RFC 3339 strings) come from the query.
    if not route.body:
        for field in request.fields:
            nested = field.message_type
            if field.name in path_fields or (nested is not None and nested.full_name != "google.protobuf.Timestamp"):
                continue
            parameters.append(_parameter(field, "query", builder, required=False))
    operation: dict[str, Any] = {
        "operationId": rpc.name,
        "summary": _summary(comment, rpc.name),
        "tags": [service.name],
        "x-grpc-method": f"/{service.full_name}/{rpc.name}",
    }
    if comment:
        operation["description"] = comment
    if parameters:
        operation["parameters"] = parameters
    body = _request_body(route, builder)
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = {"200": _success(route, builder), **_error_refs()}
    return operation


def _parameter(field: FieldDescriptor, where: str, builder: _Builder, required: bool) -> dict[str, Any]:
    schema = builder.value(field)
    if field.is_repeated:
        schema = {"type": "array", "items": schema}
    parameter: dict[str, Any] = {"name": field.name, "in": where, "required": required, "schema": schema}
    if field.is_repeated:
        parameter["explode"] = True
    description = builder.comments.get(field.full_name)
    if description:
        parameter["description"] = description
    return parameter


def _request_body(route: Route, builder: _Builder) -> dict[str, Any] | None:
    if not route.body:
        return None
    request = route.rpc.input_type
    if route.body == "*":
        remaining = [field for field in request.fields if field.name not in set(route.path_fields)]
        if not remaining:
            # The route takes a body but nothing is left for it to carry: an empty object, or none at all.
            return {
                "required": False,
                "content": {"application/json": {"schema": {"type": "object", "additionalProperties": False}}},
            }
        if len(remaining) == len(request.fields):
            schema = builder.message(request)
        else:
            schema = builder.object_schema(request, remaining, builder.comments.get(request.full_name))
    else:
        schema = _whole(request.fields_by_name[route.body], builder)
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _whole(field: FieldDescriptor, builder: _Builder) -> dict[str, Any]:
    """The schema of a field that is a whole request or response body: never null."""
    if field.is_repeated or (field.message_type is not None and field.message_type.GetOptions().map_entry):
        return builder.field(field)
    return builder.value(field)


def _success(route: Route, builder: _Builder) -> dict[str, Any]:
    output = route.rpc.output_type
    if route.response_body:
        schema = _whole(output.fields_by_name[route.response_body], builder)
    else:
        schema = builder.message(output)
    if route.streaming:
        return {
            "description": "newline-delimited JSON: one object per line, as the stream sends them; an error after "
            'the first line arrives as a last line {"error": {...}}',
            "content": {"application/x-ndjson": {"schema": schema}},
        }
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def openapi_document(service: ServiceDescriptor, comments: dict[str, str], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every annotated route of ``service``, described by ``comments`` (by full
    name, as ``source_comments`` reads them), for release ``version``."""
    builder = _Builder(comments)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes_for_service(service):
        paths.setdefault(route.template, {})[route.http_method.lower()] = _operation(route, builder, service)
    builder.schemas[ERROR_SCHEMA] = _error_schema()
    description = comments.get(service.full_name) or f"The REST mapping of {service.full_name}."
    description += (
        "\n\nGenerated from the proto's google.api.http annotations. When the server has API tokens configured, "
        "every call needs `Authorization: Bearer <token>`."
    )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": service.full_name, "version": version, "description": description},
        "servers": [{"url": "/"}],
        "tags": [{"name": service.name, "description": _summary(comments.get(service.full_name), service.name)}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "responses": _error_responses(),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        # A token when the server has tokens configured; none when it has not.
        "security": [{"bearerAuth": []}, {}],
    }


# ---- comments from protoc's source info -----------------------------------------------------------------

# Field numbers of descriptor.proto: where a SourceCodeInfo path steps into a list of declarations.
_FILE_MESSAGES, _FILE_ENUMS, _FILE_SERVICES = 4, 5, 6
_MESSAGE_FIELDS, _MESSAGE_NESTED, _MESSAGE_ENUMS = 2, 3, 4
_ENUM_VALUES = 2
_SERVICE_METHODS = 2


def source_comments(file: FileDescriptorProto) -> dict[str, str]:
    """Leading comments of the services, RPCs, messages, fields, enums and enum values of ``file`` (compiled
    with ``protoc --include_source_info``), by full name, reflowed into paragraphs."""
    comments: dict[str, str] = {}
    for location in file.source_code_info.location:
        if location.leading_comments:
            name = _declaration(file, list(location.path))
            if name:
                lines = [line.removeprefix(" ").rstrip() for line in location.leading_comments.splitlines()]
                text = _reflow(lines)
                if text:
                    comments[name] = text
    return comments


def _declaration(file: FileDescriptorProto, path: list[int]) -> str | None:
    """The full name of the declaration a SourceCodeInfo ``path`` points at; None for anything else."""
    package = file.package
    if len(path) == 2 and path[0] == _FILE_SERVICES:
        return f"{package}.{file.service[path[1]].name}"
    if len(path) == 4 and path[0] == _FILE_SERVICES and path[2] == _SERVICE_METHODS:
        service = file.service[path[1]]
        return f"{package}.{service.name}.{service.method[path[3]].name}"
    if len(path) >= 2 and path[0] == _FILE_ENUMS:
        return _enum_declaration(package, file.enum_type[path[1]], path[2:])
    if len(path) < 2 or path[0] != _FILE_MESSAGES:
        return None
    message = file.message_type[path[1]]
    scope = f"{package}.{message.name}"
    rest = path[2:]
    while len(rest) >= 2 and rest[0] == _MESSAGE_NESTED:
        message = message.nested_type[rest[1]]
        scope = f"{scope}.{message.name}"
        rest = rest[2:]
    if not rest:
        return scope
    if len(rest) == 2 and rest[0] == _MESSAGE_FIELDS:
        return f"{scope}.{message.field[rest[1]].name}"
    if len(rest) >= 2 and rest[0] == _MESSAGE_ENUMS:
        return _enum_declaration(scope, message.enum_type[rest[1]], rest[2:])
    return None


def _enum_declaration(scope: str, enum: EnumDescriptorProto, rest: list[int]) -> str | None:
    if not rest:
        return f"{scope}.{enum.name}"
    if len(rest) == 2 and rest[0] == _ENUM_VALUES:
        # Enum values are named like siblings of their enum (C++ scoping rules).
        return f"{scope}.{enum.value[rest[1]].name}"
    return None


def _reflow(lines: list[str]) -> str:
    """Comment lines as paragraphs: hard wraps joined, blank lines and list items kept."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith(("- ", "* ")):
            if current:
                paragraphs.append(" ".join(current))
            current = [stripped] if stripped else []
            continue
        current.append(stripped)
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)
