"""An OpenAPI 3.1 document for the REST shim, generated from the same descriptors the shim serves.

Routes come from ``routes_for_service`` (the proto's google.api.http rules), shapes from the message
descriptors, so nothing here is written twice: a new RPC, field or enum value shows up in /openapi.json
the next time the api starts. The JSON described is the shim's: snake_case names, every field present
(fields with presence as null when unset), enums as bare names, int64 as JSON numbers, Struct as a
free-form object and Timestamp as an RFC 3339 string.

Descriptions come from the comments in the .proto source when it can be found (the generated Python
code carries no comments); without it the document has the same structure, only fewer words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, ServiceDescriptor

from services.api.errors import GRPC_TO_HTTP
from services.api.rest import Route, routes_for_service

__all__ = ["openapi_document", "proto_comments"]

OPENAPI_VERSION = "3.1.0"
ERROR_SCHEMA = "Error"
# The error statuses every operation lists (the rest fall under "default").
ERROR_STATUSES = (400, 401, 404, 409, 503)
# Where the .proto sources may be: the repository's proto/ (a checkout, an editable install) or the
# working directory's (an image that copies proto/ next to the code).
PROTO_ROOTS = (Path(__file__).resolve().parents[2] / "proto", Path.cwd() / "proto")

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


def _version() -> str:
    try:
        return metadata.version("jobservice")
    except metadata.PackageNotFoundError:
        return "0.0.0"


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
    # As the shim reads them: without a body, the other top-level scalar fields come from the query.
    if not route.body:
        for field in request.fields:
            if field.name in path_fields or (field.message_type is not None and field.enum_type is None):
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


def openapi_document(service: ServiceDescriptor, comments: dict[str, str] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every annotated route of ``service``."""
    if comments is None:
        comments = proto_comments(service.file.name)
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
        "info": {"title": service.full_name, "version": _version(), "description": description},
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


# ---- comments from the .proto source -------------------------------------------------------------------

_TOKEN = re.compile(
    r'(?P<comment>//[^\n]*)|(?P<block>/\*.*?\*/)|(?P<string>"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\')'
    r"|(?P<word>[A-Za-z_][\w.]*)|(?P<number>-?\d+)|(?P<newline>\n)|(?P<punct>[{}();=<>,\[\]])|(?P<space>[ \t\r]+)"
    r"|(?P<other>.)",
    re.DOTALL,
)


def proto_comments(file_name: str, roots: Iterable[Path] = PROTO_ROOTS) -> dict[str, str]:
    """Leading comments of the services, RPCs, messages, fields, enums and values in the .proto named
    ``file_name`` (as the descriptor names it), by full name; empty when the source is not found."""
    for root in roots:
        path = root / file_name
        if path.is_file():
            return parse_proto_comments(path.read_text())
    return {}


def parse_proto_comments(text: str) -> dict[str, str]:
    """Leading comments (the ``//`` lines right above a declaration) by the declaration's full name."""
    comments: dict[str, str] = {}
    package = ""
    scopes: list[tuple[str, str]] = []  # (kind, full name) per open brace
    pending: list[str] = []  # comment lines of the block just above
    pending_line = -1  # the line the pending block ended on
    line = 0
    statement: list[str] = []
    comment_for_statement: list[str] = []

    def scope_name() -> str:
        for _, name in reversed(scopes):
            if name:
                return name
        return package

    def named(name: str) -> str:
        parent = scope_name()
        return f"{parent}.{name}" if parent else name

    def remember(full_name: str, lines: list[str]) -> None:
        text = _reflow(lines)
        if text:
            comments[full_name] = text

    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        value = match.group()
        if kind == "newline":
            line += 1
            continue
        if kind in ("space", "block"):
            line += value.count("\n")
            continue
        if kind == "comment":
            if pending and pending_line != line - 1:
                pending = []
            pending.append(value[2:].removeprefix(" ").rstrip())
            pending_line = line
            continue
        if not statement:
            comment_for_statement = pending if pending and pending_line == line - 1 else []
        pending = []
        if kind == "string":
            statement.append('""')
            continue
        if value == "{":
            head = statement
            scope_kind, scope = "block", ""
            if len(head) >= 2 and head[0] in ("message", "enum", "service"):
                scope_kind, scope = head[0], named(head[1])
                remember(scope, comment_for_statement)
            elif len(head) >= 2 and head[0] == "rpc":
                scope_kind = "rpc"
                remember(named(head[1]), comment_for_statement)
            elif len(head) >= 2 and head[0] == "oneof":
                scope_kind = "oneof"
            scopes.append((scope_kind, scope))
            statement = []
            continue
        if value == "}":
            if scopes:
                scopes.pop()
            statement = []
            continue
        if value == ";":
            _statement(statement, scopes, named, package, comment_for_statement, remember)
            if len(statement) >= 2 and statement[0] == "package":
                package = statement[1]
            statement = []
            continue
        statement.append(value)
    return comments


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


def _statement(
    tokens: list[str],
    scopes: list[tuple[str, str]],
    named: Any,
    package: str,
    comment: list[str],
    remember: Any,
) -> None:
    """A statement ending in ';': a field, an enum value or an rpc without options."""
    if not tokens or not comment:
        return
    if tokens[0] in ("option", "reserved", "extensions", "syntax", "import", "package"):
        return
    kinds = [kind for kind, _ in scopes if kind != "block"]
    inside = kinds[-1] if kinds else ""
    if tokens[0] == "rpc" and len(tokens) >= 2:
        remember(named(tokens[1]), comment)
    elif "=" in tokens:
        name = tokens[tokens.index("=") - 1]
        if inside in ("message", "oneof", "enum"):
            if inside == "enum":
                # Enum values are siblings of their enum, in its parent's scope (C++ scoping rules).
                enum_scope = next(scope for kind, scope in reversed(scopes) if kind == "enum")
                remember(f"{enum_scope.rpartition('.')[0]}.{name}", comment)
            else:
                remember(named(name), comment)
