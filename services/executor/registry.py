"""The handler registry: which callable runs the jobs of each type.

A handler is ``(payload: dict, ctx: JobContext) -> dict | None``, plain or ``async def``. Register one
with the ``@handler("type")`` decorator in a module the executor imports: a built-in module
(services/executor/handlers), a module named by ``--handlers`` / EXECUTOR_HANDLERS, or an entry point
in the group ``jobservice.handlers`` (``name = "pkg.module"`` imports a module that uses the decorator;
``name = "pkg.module:function"`` registers that function for the job type ``name``).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, TypeVar, Union

from shared.jobs import TYPE_PATTERN

__all__ = [
    "ENTRY_POINT_GROUP",
    "Handler",
    "HandlerRegistry",
    "Registration",
    "RegistryError",
    "default_registry",
    "handler",
    "load_entry_points",
    "load_handler_modules",
]

ENTRY_POINT_GROUP = "jobservice.handlers"

HandlerResult = Union[dict[str, Any], None]  # noqa: UP007 - a runtime alias: `X | None` fails on 3.10's typing
Handler = Callable[[dict[str, Any], Any], Union[HandlerResult, Awaitable[HandlerResult]]]  # noqa: UP007
H = TypeVar("H", bound=Callable[..., Any])

logger = logging.getLogger(__name__)


class RegistryError(ValueError):
    """A handler cannot be registered or a handler module cannot be loaded."""


@dataclass(frozen=True)
class Registration:
    """One registered handler. ``check`` runs once at start when the executor will run this type
    (e.g. send_email validating its SMTP settings), so bad configuration fails early."""

    job_type: str
    function: Handler
    is_async: bool
    origin: str
    check: Callable[[], object] | None = None


class HandlerRegistry:
    """Handlers by job type."""

    def __init__(self) -> None:
        self._handlers: dict[str, Registration] = {}

    def register(
        self,
        job_type: str,
        function: Handler,
        *,
        replace: bool = False,
        check: Callable[[], object] | None = None,
    ) -> Registration:
        """Register ``function`` for ``job_type``; a second handler for one type needs ``replace=True``."""
        if not TYPE_PATTERN.fullmatch(job_type):
            raise RegistryError(f"job type {job_type!r} must be 1-128 characters of a-z 0-9 _ . -")
        if not callable(function):
            raise RegistryError(f"the handler for {job_type!r} is not callable: {function!r}")
        origin = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"
        existing = self._handlers.get(job_type)
        if existing is not None and not replace and existing.function is not function:
            raise RegistryError(
                f"job type {job_type!r} already has a handler ({existing.origin}); "
                f"pass replace=True to register {origin} instead"
            )
        registration = Registration(job_type, function, _is_async(function), origin, check)
        self._handlers[job_type] = registration
        return registration

    def get(self, job_type: str) -> Registration | None:
        return self._handlers.get(job_type)

    def types(self) -> list[str]:
        """Registered job types, sorted."""
        return sorted(self._handlers)

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._handlers

    def __iter__(self) -> Iterator[Registration]:
        return iter([self._handlers[name] for name in sorted(self._handlers)])

    def __len__(self) -> int:
        return len(self._handlers)


default_registry = HandlerRegistry()


def handler(
    job_type: str,
    *,
    replace: bool = False,
    check: Callable[[], object] | None = None,
    registry: HandlerRegistry | None = None,
) -> Callable[[H], H]:
    """Decorator: register the function as the handler of ``job_type`` (in the default registry).

    ``check`` is called once at executor start when this type will run; raise there to refuse to start.
    """

    def register(function: H) -> H:
        (default_registry if registry is None else registry).register(job_type, function, replace=replace, check=check)
        return function

    return register


def load_handler_modules(names: Iterable[str]) -> list[ModuleType]:
    """Import each module (their ``@handler`` decorators register into the default registry)."""
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except Exception as error:  # any import-time failure of user code is a start-up error
            raise RegistryError(f"cannot import handler module {name!r}: {type(error).__name__}: {error}") from error
    return modules


def load_entry_points(registry: HandlerRegistry | None = None, group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Load the installed entry points of ``group``; return their names.

    An entry point naming a module is imported for its decorators; one naming a callable is
    registered for the job type given by the entry point's name.
    """
    registry = default_registry if registry is None else registry
    loaded = []
    for entry_point in entry_points(group=group):
        try:
            target = entry_point.load()
        except Exception as error:
            raise RegistryError(
                f"cannot load entry point {entry_point.name!r} ({entry_point.value}) of group {group}: "
                f"{type(error).__name__}: {error}"
            ) from error
        if not isinstance(target, ModuleType):
            registry.register(entry_point.name, target)
        loaded.append(entry_point.name)
    return loaded


def _is_async(function: Callable[..., Any]) -> bool:
    # Also async callable objects, and functools.partial of an async function.
    target = function
    while hasattr(target, "func"):
        target = target.func
    if inspect.iscoroutinefunction(target):
        return True
    call = getattr(target, "__call__", None)  # noqa: B004 - an async __call__ makes an async callable
    return call is not None and inspect.iscoroutinefunction(call)
