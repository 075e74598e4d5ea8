"""The machinery of the database gateway: how one named operation runs, whatever the process.

Each query method of ``shared.database.Database`` is written as a plain blocking function over
SQLAlchemy (psycopg2 underneath) and marked ``@operation()``; callers see an ``async`` method with the
same typed parameters. Awaiting it:

- runs the blocking body on the gateway's own thread pool (one hop, no extra task), so no event loop
  ever waits for PostgreSQL;
- turns driver errors into the domain's (``DatabaseUnavailable`` for a lost or refused connection,
  engine.translate_errors), so no caller ever sees a driver exception;
- keeps ``database_up`` and ``database_errors_total{operation}`` (shared/database/metrics.py), and logs an
  outage once when it starts, every REPEAT_LOG_SECONDS while it lasts, and when it ends;
- leaves a client span named after the operation when tracing is on: always inside a span that records
  (an RPC's), otherwise (a background loop) only when the call changed rows (``rows=``) or failed, so
  that idle polls leave no trace.

The operation's name is the method's name, which is also its SQL file's and its metric label's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, TypeVar

from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode
from sqlalchemy import Engine, exc

from shared.database import metrics
from shared.database.engine import create_database_engine, unavailable
from shared.errors import DatabaseUnavailable, JobServiceError

__all__ = ["REPEAT_LOG_SECONDS", "Gateway", "last_statement_span", "operation"]

logger = logging.getLogger("shared.database")

P = ParamSpec("P")
T = TypeVar("T")
G = TypeVar("G", bound="Gateway")

# How often a call that keeps failing the same way says so again.
REPEAT_LOG_SECONDS = 30.0

_SPAN_ATTRIBUTES = {"db.system": "postgresql"}
# The span of the last statement the current task ran through the gateway (None: it left none).
_LAST_SPAN: ContextVar[SpanContext | None] = ContextVar("last_statement_span", default=None)


def last_statement_span() -> SpanContext | None:
    """The span the current task's last gateway call left, if any: what the executor links each attempt
    to (the lease_jobs statement that leased it)."""
    return _LAST_SPAN.get()


def operation(
    rows: Callable[[Any], int] | None = None,
) -> Callable[[Callable[Concatenate[G, P], T]], Callable[Concatenate[G, P], Coroutine[Any, Any, T]]]:
    """Make a blocking query method an awaitable gateway operation (see the module docstring).

    ``rows`` tells how many rows a result changed; a background call that changed none leaves no span.
    """

    def decorate(function: Callable[Concatenate[G, P], T]) -> Callable[Concatenate[G, P], Coroutine[Any, Any, T]]:
        name = function.__name__

        @functools.wraps(function)
        async def offloaded(self: G, *args: P.args, **kwargs: P.kwargs) -> T:
            return await self.call(name, rows, function, self, *args, **kwargs)

        return offloaded

    return decorate


class _Outage:
    """Whether the database answers, as the last call saw it; logs the changes."""

    def __init__(self) -> None:
        self.up: bool | None = None
        self.down_since = 0.0
        self.last_logged = 0.0
        # When a call last found the database unavailable (or, before any did, when this began).
        self.last_unavailable = time.monotonic()

    def succeeded(self) -> None:
        if self.up is False:
            logger.info("database available again after %.1f s", time.monotonic() - self.down_since)
        self.up = True
        metrics.DATABASE_UP.set(1)

    def failed(self, name: str, error: BaseException) -> None:
        metrics.DATABASE_ERRORS.labels(name).inc()
        if not isinstance(error, DatabaseUnavailable):
            return
        now = self.last_unavailable = time.monotonic()
        if self.up is not False:
            self.up = False
            self.down_since = self.last_logged = now
            metrics.DATABASE_UP.set(0)
            logger.warning("database unavailable (%s): %s; retrying", name, error.message)
        elif now - self.last_logged >= REPEAT_LOG_SECONDS:
            self.last_logged = now
            logger.warning(
                "database still unavailable after %.0f s (%s): %s", now - self.down_since, name, error.message
            )


def _translated(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` with driver errors turned into the domain's (runs in a database thread).

    engine.translate_errors, written out: a try costs less than a context manager on every call."""
    try:
        return function(*args)
    except exc.SQLAlchemyError as error:
        translated = unavailable(error)
        if translated is None:
            raise
        raise translated from error


class Gateway:
    """Connections, the thread pool and the bookkeeping every operation shares (the query methods live
    in the mixins that ``shared.database.Database`` combines)."""

    def __init__(
        self,
        database_url: str,
        application_name: str,
        pool_size: int,
        threads: int | None = None,
        group_writer: bool = False,
        tracer: trace.Tracer | None = None,
        engine: Engine | None = None,
        pooler: str = "none",
    ) -> None:
        """``pool_size`` pooled connections and ``threads`` database threads (default: as many).

        ``group_writer`` adds one autocommit connection for group-committed submits
        (submit_jobs_independently); ``tracer``: leave spans with it (processes pass one when
        configure_tracing installed a provider; without one no span work happens at all);
        ``engine``: connections of the caller's to use instead (tests share theirs), left open by close();
        ``pooler``: DATABASE_POOLER (shared/database/engine.py).
        """
        self._own_engine = engine is None
        self.engine: Engine = engine or create_database_engine(
            database_url, application_name, pool_size=pool_size, pooler=pooler
        )
        self.writer: Engine | None = (
            create_database_engine(
                database_url, application_name, pool_size=1, autocommit=True, pooler=pooler, report=False
            )
            if group_writer
            else None
        )
        self._threads = ThreadPoolExecutor(max_workers=threads or pool_size, thread_name_prefix="db")
        self._outage = _Outage()
        self._tracer = tracer

    async def call(
        self, name: str, rows: Callable[[Any], int] | None, function: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Run ``function(*args, **kwargs)`` as the operation ``name``: what ``@operation`` methods do."""
        loop = asyncio.get_running_loop()
        if kwargs:
            function = functools.partial(function, **kwargs)
        started_ns = time.time_ns() if self._tracer is not None else 0
        try:
            result = await loop.run_in_executor(self._threads, _translated, function, *args)
        except BaseException as error:
            if _is_failure(error):
                self._outage.failed(name, error)
            elif isinstance(error, JobServiceError) and self._outage.up is not True:
                self._outage.succeeded()  # a domain answer (job not found...): the database answered
            if self._tracer is not None:
                self._record_span(name, started_ns, None, error)
            raise
        if self._outage.up is not True:
            self._outage.succeeded()
        if self._tracer is not None:
            self._record_span(name, started_ns, rows(result) if rows is not None else None, None)
        return result

    def unbroken_seconds(self) -> float:
        """How long this process has reached the database without a break: since this gateway was made, or
        since the last call that found the database unavailable. What crash detection may look back over
        (rescue_lost_jobs): a silence that began before it may be one this process lived through too."""
        return time.monotonic() - self._outage.last_unavailable

    def _record_span(self, name: str, started_ns: int, changed: int | None, error: BaseException | None) -> None:
        assert self._tracer is not None
        if error is None and not changed and not trace.get_current_span().is_recording():
            _LAST_SPAN.set(None)
            return
        attributes: dict[str, str | int] = {**_SPAN_ATTRIBUTES, "db.operation.name": name}
        if changed is not None:
            attributes["db.rows_affected"] = changed
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, start_time=started_ns, attributes=attributes)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()
        _LAST_SPAN.set(span.get_span_context() if error is None else None)

    def close(self) -> None:
        """Let the threads go (without waiting for a statement that hangs) and close the connections."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._own_engine:
            self.engine.dispose()
        if self.writer is not None:
            self.writer.dispose()


def _is_failure(error: BaseException) -> bool:
    """A failure of the database, as opposed to its answer (a domain error such as JobNotFound)."""
    return isinstance(error, Exception) and (
        isinstance(error, DatabaseUnavailable) or not isinstance(error, JobServiceError)
    )
