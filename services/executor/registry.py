"""The handler registry: which callable runs the jobs of each type.

A handler is ``(payload, ctx: JobContext) -> result``, plain or ``async def``. The payload is the job's
dict, or, when the parameter is annotated with a pydantic model or a dataclass, the payload validated into
it (services/executor/payloads.py); the result is a dict, a model, a dataclass or None. Register one
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
from enum import Enum
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Protocol, TypeVar

from services.executor.payloads import is_payload_type, payload_annotation, validating_call
from shared.jobs import TYPE_PATTERN

__all__ = [
    "ENTRY_POINT_GROUP",
    "DeclaredJobType",
    "Handler",
    "HandlerRegistry",
    "Mode",
    "Registration",
    "RegistryError",
    "default_registry",
    "handler",
    "load_entry_points",
    "load_handler_modules",
]

ENTRY_POINT_GROUP = "jobservice.handlers"

HandlerResult = Any  # a dict, a pydantic model, a dataclass instance or None
Handler = Callable[[Any, Any], HandlerResult | Awaitable[HandlerResult]]
H = TypeVar("H", bound=Callable[..., Any])

logger = logging.getLogger(__name__)


class RegistryError(ValueError):
    """A handler cannot be registered or a handler module cannot be loaded."""


class DeclaredJobType(Protocol):
    """A job type declared with its payload type, shared by producers and handlers (``jobclient.JobDefinition``)."""

    @property
    def name(self) -> str: ...

    @property
    def payload_type(self) -> type | None: ...


class Mode(str, Enum):
    """How the executor calls a handler."""

    ASYNC = "async"  # ``async def``: a task on the event loop; cancelled on timeout or cancel
    THREAD = "thread"  # plain ``def``: in a thread of the handler pool; abandoned on timeout or cancel
    INLINE = "inline"  # plain ``def`` registered with inline=True: called right on the event loop


@dataclass(frozen=True)
class Registration:
    """One registered handler. ``function`` is what the executor calls with the payload dict: ``handler``
    itself, or for a typed handler ``handler`` behind the validation into ``payload_type``. ``check`` runs
    once at start when the executor will run this type (e.g. send_email validating its SMTP settings), so
    bad configuration fails early."""

    job_type: str
    function: Handler
    mode: Mode
    origin: str
    check: Callable[[], object] | None = None
    handler: Handler | None = None
    payload_type: type | None = None

    @property
    def is_async(self) -> bool:
        return self.mode is Mode.ASYNC


class HandlerRegistry:
    """Handlers by job type."""

    def __init__(self) -> None:
        self._handlers: dict[str, Registration] = {}

    def register(
        self,
        job_type: str | DeclaredJobType,
        function: Handler,
        *,
        replace: bool = False,
        inline: bool = False,
        check: Callable[[], object] | None = None,
    ) -> Registration:
        """Register ``function`` for ``job_type``; a second handler for one type needs ``replace=True``.

        ``inline=True`` (plain functions only) calls the handler on the event loop itself, saving the
        hop to a thread: for handlers that take microseconds and never block (no I/O, no sleeping).
        The executor cannot time such a call out, and everything else waits while it runs.

        ``job_type`` is a name, or a declared job type whose ``payload_type`` the handler then receives.
        """
        declared = None
        if not isinstance(job_type, str):
            job_type, declared = getattr(job_type, "name", job_type), getattr(job_type, "payload_type", None)
        if not isinstance(job_type, str) or not TYPE_PATTERN.fullmatch(job_type):
            raise RegistryError(f"job type {job_type!r} must be 1-128 characters of a-z 0-9 _ . -")
        if not callable(function):
            raise RegistryError(f"the handler for {job_type!r} is not callable: {function!r}")
        origin = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"
        existing = self._handlers.get(job_type)
        if existing is not None and not replace and existing.handler is not function:
            raise RegistryError(
                f"job type {job_type!r} already has a handler ({existing.origin}); "
                f"pass replace=True to register {origin} instead"
            )
        if _is_async(function):
            if inline:
                raise RegistryError(f"the handler for {job_type!r} is async; inline=True is for plain functions")
            mode = Mode.ASYNC
        else:
            mode = Mode.INLINE if inline else Mode.THREAD
        payload_type = _payload_type(job_type, function, origin, declared)
        call = function if payload_type is None else validating_call(function, payload_type)
        registration = Registration(job_type, call, mode, origin, check, function, payload_type)
        self._handlers[job_type] = registration
        return registration

    def add(self, registration: Registration) -> None:
        """Add a registration made elsewhere (e.g. another registry's, adapted), replacing its type's."""
        self._handlers[registration.job_type] = registration

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
    job_type: str | DeclaredJobType,
    *,
    replace: bool = False,
    inline: bool = False,
    check: Callable[[], object] | None = None,
    registry: HandlerRegistry | None = None,
) -> Callable[[H], H]:
    """Decorator: register the function as the handler of ``job_type`` (in the default registry).

    ``job_type`` is the type's name, or a declared job type (``jobclient.JobDefinition("send_email", SendEmail)``)
    whose payload type the handler receives. ``inline=True``: see ``HandlerRegistry.register``. ``check``
    is called once at executor start when this type will run; raise there to refuse to start.
    """

    def register(function: H) -> H:
        target = default_registry if registry is None else registry
        target.register(job_type, function, replace=replace, inline=inline, check=check)
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


def _payload_type(job_type: str, function: Handler, origin: str, declared: type | None) -> type | None:
    """What the handler's payload is validated into: its payload annotation when that is a model or a
    dataclass, else the declared type; None for a plain dict handler. RegistryError when they disagree."""
    try:
        annotation = payload_annotation(function)
    except Exception as error:
        raise RegistryError(
            f"cannot resolve the payload annotation of {origin} ({type(error).__name__}: {error}); "
            "import its type at run time, not only under TYPE_CHECKING"
        ) from error
    if declared is None:
        return annotation if is_payload_type(annotation) else None
    if not is_payload_type(declared):
        raise RegistryError(
            f"job type {job_type!r} declares the payload type {declared!r}: not a pydantic model or a dataclass"
        )
    if annotation is not inspect.Parameter.empty and annotation is not declared:
        raise RegistryError(
            f"job type {job_type!r} declares its payload as {declared.__name__}, but {origin} takes {annotation!r}: "
            f"annotate the payload parameter with {declared.__name__}, or leave it unannotated"
        )
    return declared


def _is_async(function: Callable[..., Any]) -> bool:
    # Also async callable objects, and functools.partial of an async function.
    target = function
    while hasattr(target, "func"):
        target = target.func
    if inspect.iscoroutinefunction(target):
        return True
    call = getattr(target, "__call__", None)  # noqa: B004 - an async __call__ makes an async callable
    return call is not None and inspect.iscoroutinefunction(call)
