"""Refusing to run on a database whose schema is behind the code."""

from __future__ import annotations

from sqlalchemy import Engine

from shared.database.engine import translate_errors
from shared.database.queries import query
from shared.errors import SchemaOutOfDate

__all__ = ["SCHEMA_REVISION", "check_schema", "schema_revision"]

# The newest Alembic revision under migrations/versions; a test keeps the two in step.
SCHEMA_REVISION = "0007"


def schema_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when no migration has run."""
    with translate_errors(), engine.connect() as conn:
        if not conn.execute(query("select_alembic_version_exists")).scalar_one():
            return None
        return conn.execute(query("select_schema_revision")).scalar_one_or_none()


def check_schema(engine: Engine) -> None:
    """Raise SchemaOutOfDate unless the database is at SCHEMA_REVISION or newer."""
    revision = schema_revision(engine)
    if revision is None or revision < SCHEMA_REVISION:
        raise SchemaOutOfDate(
            f"the database schema is at revision {revision or 'none'}, this code needs {SCHEMA_REVISION}: "
            "run `make migrate` (alembic upgrade head) against DATABASE_URL first"
        )
