"""Typed payloads and results: pydantic models and dataclasses in and out of handlers.

A handler whose payload parameter is annotated with a pydantic model or a dataclass receives the payload
validated into that type; a payload that does not fit fails the job at once (``InvalidPayload``, a
``PermanentError``) with a message naming each bad field. The annotation is read once, when the handler
is registered: an untyped handler is called exactly as before, at no cost per job.

A handler may return a model or a dataclass: its JSON form is stored as the job's result.

pydantic is imported only once a typed handler is registered or a model or dataclass is returned (a
pydantic model's module has imported it already): an executor that runs only untyped handlers starts
without it, a few hundred milliseconds sooner.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeGuard

from services.executor.errors import InvalidPayload

__all__ = [
    "is_payload_type",
    "jsonable",
    "payload_annotation",
    "validating_call",
]


def is_payload_type(annotation: object) -> TypeGuard[type]:
    """Whether ``annotation`` is a type a payload can be validated into: a pydantic model or a dataclass."""
    if not isinstance(annotation, type):
        return False
    pydantic = sys.modules.get("pydantic")  # a model's class exists only once pydantic is imported
    return dataclasses.is_dataclass(annotation) or (pydantic is not None and issubclass(annotation, pydantic.BaseModel))


def is_payload_instance(value: object) -> bool:
    """Whether ``value`` is a pydantic model or dataclass instance (stored as its JSON)."""
    return is_payload_type(type(value))


def jsonable(value: Any) -> Any:
    """A model or dataclass instance as plain JSON values (dates as ISO text...); anything else unchanged.

    ValueError when the instance holds something JSON cannot represent.
    """
    if not is_payload_instance(value):
        return value
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    try:
        return to_jsonable_python(value, by_alias=True)  # a field's alias is its name in JSON
    except PydanticSerializationError as error:
        raise ValueError(f"{type(value).__name__} cannot be stored as JSON: {error}") from error


def payload_annotation(function: Callable[..., Any]) -> object:
    """The annotation of the handler's first (payload) parameter, with ``from __future__ import annotations``
    strings resolved; ``inspect.Parameter.empty`` when there is none.

    NameError (or another evaluation error) when the annotation names something not importable at run time.
    """
    try:
        return _first_parameter(inspect.signature(function, eval_str=True)).annotation
    except (TypeError, ValueError):  # no signature (some builtins): nothing to go by
        return inspect.Parameter.empty
    except Exception:  # another parameter's annotation does not resolve (e.g. imported under TYPE_CHECKING)
        annotation = _first_parameter(inspect.signature(function)).annotation
        if not isinstance(annotation, str):
            return annotation
        return eval(annotation, _globals_of(function))  # the payload's own annotation must resolve


def validating_call(function: Callable[..., Any], payload_type: type) -> Callable[[Any, Any], Any]:
    """``function`` behind a check: the payload dict is validated into ``payload_type`` first.

    The call stays a plain function that returns whatever ``function`` returns (a coroutine for an async
    handler), so the executor runs it the same way as the handler itself.
    """
    from pydantic import TypeAdapter, ValidationError

    adapter: TypeAdapter[Any] = TypeAdapter(payload_type)

    @functools.wraps(function)
    def call(payload: Any, ctx: Any) -> Any:
        try:
            value = adapter.validate_python(payload)
        except ValidationError as error:
            raise InvalidPayload(describe_validation_error(error.errors(include_url=False))) from None
        return function(value, ctx)

    return call


def describe_validation_error(errors: Iterable[Any]) -> str:
    """``payload.to: field required; payload.items[2].n: input should be a valid integer``: each bad field."""
    parts = []
    for error in errors:
        path = "payload"
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = str(error["msg"])
        parts.append(f"{path}: {message[:1].lower()}{message[1:]}")
    return "; ".join(parts)


def _first_parameter(signature: inspect.Signature) -> inspect.Parameter:
    for parameter in signature.parameters.values():
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            return parameter
    raise TypeError("the handler takes no positional parameter")


def _globals_of(function: Callable[..., Any]) -> dict[str, Any]:
    target: Any = function
    while isinstance(target, functools.partial):
        target = target.func
    if not inspect.isfunction(target) and not inspect.ismethod(target):
        target = type(target).__call__  # a callable object
    return dict(getattr(inspect.unwrap(target), "__globals__", {}))
