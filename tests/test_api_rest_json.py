"""The REST shim's JSON writer is protobuf's JSON mapping with the service's conventions, exactly.

``message_to_json`` walks a message by a plan per type instead of calling json_format.MessageToDict and
completing its result. Here the straightforward version (MessageToDict with the same options, then every
field in declaration order, unset ones as null, payload integers as integers) is the reference: for every
message type the service reads or writes, empty and with every field set, both give the same JSON text,
key order included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from services.api.rest import message_to_json
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.structs import plain_numbers


def reference(message: Message) -> dict[str, Any]:
    data = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )
    descriptor: Any = message.DESCRIPTOR
    return _complete(data, descriptor)


def _complete(data: dict[str, Any], descriptor: Descriptor) -> dict[str, Any]:
    complete: dict[str, Any] = {}
    for field in descriptor.fields:
        name, nested = field.name, field.message_type
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


def message_types() -> Iterator[Descriptor]:
    """Every message type of the service's requests and replies, and the types nested in them."""
    seen: set[str] = set()
    pending = [t for m in pb.DESCRIPTOR.services_by_name["JobService"].methods for t in (m.input_type, m.output_type)]
    while pending:
        descriptor = pending.pop()
        if descriptor.full_name in seen or not descriptor.full_name.startswith("jobs."):
            continue
        seen.add(descriptor.full_name)
        yield descriptor
        pending += [field.message_type for field in descriptor.fields if field.message_type is not None]


PAYLOAD = {"n": 3, "big": 2**53, "f": 2.5, "s": "text é", "b": True, "z": None, "l": [1, "a", [2.0]], "o": {"k": -1}}


def scalar(field: Any, index: int) -> Any:
    if field.enum_type is not None:
        return field.enum_type.values[-1 - index % len(field.enum_type.values)].number
    return {
        FieldDescriptor.TYPE_STRING: f"text é {index}",
        FieldDescriptor.TYPE_BOOL: True,
        FieldDescriptor.TYPE_DOUBLE: 1.5 + index,
        FieldDescriptor.TYPE_FLOAT: 0.25,
        FieldDescriptor.TYPE_BYTES: b"\x00\xff" * (index + 1),
        FieldDescriptor.TYPE_INT64: 2**60 + index,
        FieldDescriptor.TYPE_UINT64: 2**63 + index,
    }.get(field.type, 7 + index)


def fill(message: Message, depth: int = 0) -> Message:
    """``message`` with every field set (nested messages too, a few levels deep)."""
    for field in message.DESCRIPTOR.fields:
        nested = field.message_type
        target = getattr(message, field.name)
        if nested is not None and nested.GetOptions().map_entry:
            for index in range(2):
                target[scalar(nested.fields_by_name["key"], index)] = scalar(nested.fields_by_name["value"], index)
        elif nested is not None and nested.full_name == "google.protobuf.Struct":
            for item in [target.add()] if field.is_repeated else [target]:
                item.update(PAYLOAD)
        elif nested is not None and nested.full_name == "google.protobuf.Timestamp":
            for item in [target.add(), target.add()] if field.is_repeated else [target]:
                item.FromSeconds(1_700_000_000)
                item.nanos = 5000
        elif nested is not None:
            if depth < 3:
                for item in [target.add(), target.add()] if field.is_repeated else [target]:
                    fill(item, depth + 1)
        elif field.is_repeated:
            target.extend([scalar(field, 0), scalar(field, 1)])
        else:
            setattr(message, field.name, scalar(field, 0))
    return message


@pytest.mark.parametrize("descriptor", list(message_types()), ids=lambda d: d.name)
@pytest.mark.parametrize("filled", [False, True], ids=["empty", "filled"])
def test_every_message_type_is_written_as_the_reference_writes_it(descriptor: Descriptor, filled: bool) -> None:
    message = message_factory.GetMessageClass(descriptor)()
    if filled:
        fill(message)
    assert json.dumps(message_to_json(message)) == json.dumps(reference(message))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    payload=st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    status=st.sampled_from(pb.Job.Status.values()),
)
def test_any_payload_and_status_is_written_as_the_reference_writes_it(payload: dict[str, Any], status: int) -> None:
    job = pb.Job(job_id=1, type="echo", status=status)  # type: ignore[arg-type]
    job.payload.update(payload)
    reply = pb.SubmitJobResponse(job=job, created=True)
    assert json.dumps(message_to_json(reply)) == json.dumps(reference(reply))
