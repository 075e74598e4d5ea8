"""The change log: every call that needs the admin role (cancel, retry, limits, schedules, and any later
call given that role in services/api/auth.py's METHOD_ROLES) is logged once it has an outcome, at INFO on
the logger ``services.api.audit``, with what it asked for, the caller's role and token fingerprint (never
the token) and the gRPC status code; calls refused for their role are logged too:

    CancelJob job_id=17 by admin token 1f2e3d4c: OK
    DeleteSchedule name='nightly' by submit token 9a8b7c6d: PERMISSION_DENIED

Payloads are not logged, and strings are cut at 64 characters.
"""

from __future__ import annotations

import logging

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.api.auth import METHOD_ROLES, Principal, Role

__all__ = ["describe_request", "is_change", "log_change"]

log = logging.getLogger(__name__)

_MAX_TEXT = 64
_MAX_DEPTH = 2
_MAX_ITEMS = 10


def is_change(full_method: str) -> bool:
    """Whether calls of ``full_method`` are logged: those needing the admin role (or not in the table)."""
    return METHOD_ROLES.get(full_method, Role.ADMIN) >= Role.ADMIN


def log_change(caller: Principal | None, method: str, request: Message | None, code: str) -> None:
    """Log one change with its outcome; nothing for a caller who never authenticated (no one to name).
    ``request`` is None when the call was refused before its message was read (a REST body)."""
    if caller is None:
        return
    log.info(
        "%s %s by %s: %s",
        method,
        (describe_request(request) if request is not None else "") or "-",
        caller,
        code,
        extra={"role": caller.role.label, "token_fingerprint": caller.fingerprint or "-"},
    )


def describe_request(message: Message, prefix: str = "", depth: int = 0) -> str:
    """The fields set in ``message`` as ``name=value`` pairs (nested ones as ``outer.name``), without
    payloads or other google.protobuf messages, and without anything nested deeper than two levels."""
    parts = []
    for field, value in message.ListFields():
        name = prefix + field.name
        if field.message_type is None:
            values = [_text(field, item) for item in value] if field.is_repeated else [_text(field, value)]
            shown = ",".join(values[:_MAX_ITEMS]) + (",..." if len(values) > _MAX_ITEMS else "")
            parts.append(f"{name}=[{shown}]" if field.is_repeated else f"{name}={shown}")
        elif not field.message_type.full_name.startswith("google.") and not field.is_repeated and depth < _MAX_DEPTH:
            parts.append(describe_request(value, name + ".", depth + 1))
    return " ".join(part for part in parts if part)


def _text(field: FieldDescriptor, value: object) -> str:
    if field.enum_type is not None and isinstance(value, int):
        known = field.enum_type.values_by_number.get(value)
        return known.name if known is not None else str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "...")
    return str(value)
