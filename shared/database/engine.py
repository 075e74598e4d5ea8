"""Connecting to PostgreSQL, and turning driver errors into the service's own exceptions.

``DATABASE_POOLER`` (every process's) says what stands between a process and PostgreSQL, and so what its
connections may rely on:

- ``none`` (direct): each connection asks for ``timezone=UTC`` and ``statement_timeout`` in its start-up
  ``options``; LISTEN and session advisory locks work.
- ``session`` (a session-mode pool, e.g. PgBouncer ``pool_mode = session``): no ``options`` (PgBouncer
  refuses them); the role or database supplies both settings. LISTEN and session locks work.
- ``transaction`` (PgBouncer ``pool_mode = transaction``): as ``session``, and nothing may outlive a
  transaction: executors poll instead of LISTEN; the scheduler refuses to run (it needs a session).

Each engine reports once, at its first connection, the mode and what the server gave it, with a warning
when the settings are not what the service needs (see docs/deploy.md, "Behind PgBouncer").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine, create_engine, event, exc

from shared.database.queries import query
from shared.errors import DatabaseUnavailable

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_SECONDS",
    "DEFAULT_STATEMENT_TIMEOUT_MS",
    "create_database_engine",
    "describe_failed_statement",
    "sqlalchemy_url",
    "translate_errors",
    "unavailable",
]

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_SECONDS = 5
DEFAULT_STATEMENT_TIMEOUT_MS = 30_000
# Names PostgreSQL gives the UTC zone (Debian's server defaults to Etc/UTC).
_UTC_NAMES = frozenset({"UTC", "Etc/UTC"})
# What a connection pooler answers when a client sends start-up options it does not pass on.
_POOLER_REFUSAL = "unsupported startup parameter"


def sqlalchemy_url(database_url: str) -> str:
    """DATABASE_URL (``postgresql://...``) as SQLAlchemy wants it (``postgresql+psycopg2://...``).

    libpq's multi-host form, ``postgresql://user@host1:5432,host2:5432/db?target_session_attrs=read-write``,
    becomes SQLAlchemy's repeated ``host`` query parameters (``...@/db?host=host1:5432&host=host2:5432&...``),
    which its psycopg2 dialect hands to libpq as ``host=host1,host2 port=5432,5432``.
    """
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg2://" + _hosts_as_query(database_url[len(prefix) :])
    return database_url


def _hosts_as_query(rest: str) -> str:
    authority, _, tail = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if "," not in hosts:
        return rest
    path, question, params = tail.partition("?")
    repeated = urlencode([("host", host) for host in hosts.split(",")], safe=":[]")
    return f"{userinfo}{at}/{path}?{repeated}" + (f"&{params}" if question and params else "")


def create_database_engine(
    database_url: str,
    application_name: str,
    pool_size: int = 5,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    autocommit: bool = False,
    pooler: str = "none",
    report: bool = True,
) -> Engine:
    """An engine whose sessions speak UTC and give up on a statement after ``statement_timeout_ms``.

    ``autocommit`` makes every statement its own transaction: one round trip instead of BEGIN,
    statement, COMMIT, for callers whose unit of work is a single statement. ``pooler`` is
    DATABASE_POOLER (see the module docstring). ``report`` logs, at the first connection, the mode and
    what the server gave (one engine of a process is enough).
    """
    connect_args: dict[str, Any] = {
        "application_name": application_name,
        "connect_timeout": DEFAULT_CONNECT_TIMEOUT_SECONDS,
        # The statement timeout is enforced by the server, so it cannot end a query whose server
        # vanished from the network: TCP keepalives notice that within about 25 s instead of ~15 min.
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    if pooler == "none":
        connect_args["options"] = f"-c timezone=UTC -c statement_timeout={statement_timeout_ms}"
    engine = create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=0,
        # No pre-ping: it costs a round trip per checkout. A connection found dead fails its one call
        # (DatabaseUnavailable), and SQLAlchemy then retires every connection older than the failure.
        pool_pre_ping=False,
        pool_timeout=10,
        pool_recycle=1800,
        isolation_level="AUTOCOMMIT" if autocommit else "READ COMMITTED",
        # A failed statement's exception (and so any log line or traceback showing it) never carries the
        # values it was given: they are client data (payloads, keys), perhaps secrets.
        hide_parameters=True,
        connect_args=connect_args,
    )
    if report:

        def report_once(dbapi_connection: Any, _record: Any) -> None:
            _report(dbapi_connection, pooler, statement_timeout_ms)

        event.listen(engine, "first_connect", report_once)
    return engine


def _report(dbapi_connection: Any, pooler: str, statement_timeout_ms: int) -> None:
    """Log the mode and the session's settings; warn when they are not what the service needs."""
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(query("select_session_settings").text)
            columns = [column.name for column in cursor.description]
            row = dict(zip(columns, cursor.fetchone(), strict=True))
    except Exception:  # a report must never stop a connection from being used
        log.debug("could not read the session's settings", exc_info=True)
        return
    finally:
        dbapi_connection.rollback()
    mode = {
        "none": "direct (timezone and statement_timeout sent at connect; LISTEN and session locks used)",
        "session": "through a session-mode pool (no start-up options: the role or database sets them)",
        "transaction": "through a transaction-mode pool (no start-up options: the role or database sets "
        "them; no LISTEN, no session state)",
    }[pooler]
    log.info(
        "database: DATABASE_POOLER=%s, %s; PostgreSQL %s at %s:%s%s; timezone %s, statement_timeout %s",
        pooler,
        mode,
        row["server_version"],
        row["server_address"] or "local socket",
        row["server_port"] or "",
        ", a read-only standby" if row["in_recovery"] else "",
        row["timezone"],
        row["statement_timeout"],
    )
    wrong = []
    if row["timezone"] not in _UTC_NAMES:
        wrong.append(f"ALTER ROLE CURRENT_USER SET timezone = 'UTC'  (now {row['timezone']})")
    if row["statement_timeout_ms"] != statement_timeout_ms:
        wrong.append(
            f"ALTER ROLE CURRENT_USER SET statement_timeout = '{_duration(statement_timeout_ms)}'  "
            f"(now {row['statement_timeout']})"
        )
    if wrong and pooler == "none":
        log.warning(
            "the connection's start-up options were not applied: a connection pooler in front that ignores them? "
            "Behind PgBouncer set DATABASE_POOLER=transaction (or session) and give the role the settings: %s",
            "; ".join(wrong),
        )
    elif wrong:
        log.warning("the role or database lacks settings the service needs; run: %s", "; ".join(wrong))
    if row["in_recovery"]:
        log.warning(
            "connected to a read-only standby: writes will fail; with several hosts in DATABASE_URL add "
            "target_session_attrs=read-write"
        )


def _duration(milliseconds: int) -> str:
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise lost connections and refused connects as DatabaseUnavailable."""
    try:
        yield
    except exc.SQLAlchemyError as error:
        translated = unavailable(error)
        if translated is None:
            raise
        raise translated from error


def unavailable(error: BaseException) -> DatabaseUnavailable | None:
    """What a driver error means when the database cannot be reached (DatabaseUnavailable), else None:
    a lost connection, a refused connect, no pooled connection free in time."""
    if isinstance(error, DatabaseUnavailable):
        return error
    if isinstance(error, exc.OperationalError | exc.InterfaceError):
        return DatabaseUnavailable(f"database unavailable: {_first_line(error)}{_hint(error)}")
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return DatabaseUnavailable(f"database connection lost: {_first_line(error)}")
    if isinstance(error, exc.TimeoutError):
        return DatabaseUnavailable("no database connection free in time")
    return None


def describe_failed_statement(error: BaseException) -> str | None:
    """What a log line may say about a statement that failed: its SQLSTATE, the driver's error class and
    the SQL with its placeholders; None when ``error`` is not a failed statement. Never the driver's own
    message, nor the statement's values: PostgreSQL quotes the offending value in its message, and
    psycopg2 shows the statement with its values filled in."""
    if not isinstance(error, exc.StatementError):
        return None
    orig = error.orig
    code = getattr(orig, "pgcode", None) or "unknown"
    statement = " ".join(str(error.statement or "").split())[:500]
    return f"{type(orig).__name__} (SQLSTATE {code}) in: {statement}"


def _hint(error: BaseException) -> str:
    if _POOLER_REFUSAL in str(getattr(error, "orig", None) or error):
        return (
            " (a connection pooler, e.g. PgBouncer, refuses the start-up options: set DATABASE_POOLER=transaction "
            "or session, see docs/deploy.md)"
        )
    return ""


def _first_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
