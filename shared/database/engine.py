"""Connecting to PostgreSQL, and turning driver errors into the service's own exceptions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, exc

from shared.errors import DatabaseUnavailable

__all__ = ["DEFAULT_CONNECT_TIMEOUT_SECONDS", "create_database_engine", "sqlalchemy_url", "translate_errors"]

DEFAULT_CONNECT_TIMEOUT_SECONDS = 5


def sqlalchemy_url(database_url: str) -> str:
    """DATABASE_URL (``postgresql://...``) as SQLAlchemy wants it (``postgresql+psycopg2://...``)."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg2://" + database_url[len(prefix) :]
    return database_url


def create_database_engine(
    database_url: str,
    application_name: str,
    pool_size: int = 5,
    statement_timeout_ms: int = 30_000,
    autocommit: bool = False,
) -> Engine:
    """An engine whose sessions speak UTC and give up on a statement after ``statement_timeout_ms``.

    ``autocommit`` makes every statement its own transaction: one round trip instead of BEGIN,
    statement, COMMIT, for callers whose unit of work is a single statement.
    """
    return create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=0,
        # No pre-ping: it costs a round trip per checkout. A connection found dead fails its one call
        # (DatabaseUnavailable), and SQLAlchemy then retires every connection older than the failure.
        pool_pre_ping=False,
        pool_timeout=10,
        pool_recycle=1800,
        isolation_level="AUTOCOMMIT" if autocommit else "READ COMMITTED",
        connect_args={
            "application_name": application_name,
            "connect_timeout": DEFAULT_CONNECT_TIMEOUT_SECONDS,
            # The statement timeout is enforced by the server, so it cannot end a query whose server
            # vanished from the network: TCP keepalives notice that within about 25 s instead of ~15 min.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "options": f"-c timezone=UTC -c statement_timeout={statement_timeout_ms}",
        },
    )


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise lost connections and refused connects as DatabaseUnavailable."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise DatabaseUnavailable(f"database unavailable: {_first_line(error)}") from error
    except exc.DBAPIError as error:
        if error.connection_invalidated:
            raise DatabaseUnavailable(f"database connection lost: {_first_line(error)}") from error
        raise
    except exc.TimeoutError as error:
        raise DatabaseUnavailable("no database connection free in time") from error


def _first_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
