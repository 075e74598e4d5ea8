"""google.protobuf.Struct payloads as plain Python values, for the api and the client library alike.

Struct keeps every number as a double, so a payload's ``1`` comes back as ``1.0``; integral values up to
2**53 (where doubles stop being exact) are given back as ints, as the submitter wrote them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

__all__ = ["plain_numbers", "struct_to_dict"]

_MAX_EXACT_INT = 2**53


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
    """A Struct as a dict with its integers intact."""
    if not message.fields:
        return {}
    result: dict[str, Any] = plain_numbers(json_format.MessageToDict(message))
    return result
