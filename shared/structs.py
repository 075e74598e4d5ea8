"""google.protobuf.Struct payloads as plain Python values, for the api and the client library alike.

Struct keeps every number as a double, so a payload's ``1`` comes back as ``1.0``; integral values up to
2**53 (where doubles stop being exact) are given back as ints, as the submitter wrote them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import struct_pb2

__all__ = ["find_inexact_integer", "find_nul_character", "plain_numbers", "struct_to_dict"]

_MAX_EXACT_INT = 2**53


def find_inexact_integer(value: Any, path: str) -> str | None:
    """The path (``payload.items[2].n``) of the first integer in ``value`` (JSON-like) that a Struct,
    which keeps numbers as doubles, could not store exactly (beyond ±2**53); None when there is none."""
    return _find(
        value, path, lambda item: isinstance(item, int) and not isinstance(item, bool) and abs(item) > _MAX_EXACT_INT
    )


def find_nul_character(value: Any, path: str) -> str | None:
    """The path of the first string (or key) in ``value`` (JSON-like) holding a NUL character; None when
    there is none. The six characters ``\\u0000`` written as text are not one."""
    return _find(value, path, lambda item: isinstance(item, str) and "\x00" in item)


def _find(value: Any, path: str, wrong: Callable[[Any], bool]) -> str | None:
    if wrong(value):
        return path
    if isinstance(value, dict):
        for key, item in value.items():
            if wrong(key):
                return path
            found = _find(item, f"{path}.{key}", wrong)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find(item, f"{path}[{index}]", wrong)
            if found is not None:
                return found
    return None


def plain_numbers(value: Any) -> Any:
    """``value`` (JSON-like) with integral floats turned back into ints, recursively."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _MAX_EXACT_INT:
        return int(value)
    if isinstance(value, dict):
        return {key: plain_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_numbers(item) for item in value]
    return value


def struct_to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict with its integers intact.

    Walks the message directly: json_format.MessageToDict's generic printer costs several times more, and
    submits convert every payload. A Value with no kind set (which no JSON encoder produces) reads as null.
    """
    return {key: _value(item) for key, item in message.fields.items()}


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) <= _MAX_EXACT_INT else number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {key: _value(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    return None
