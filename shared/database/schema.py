"""Refusing to run on a database whose schema is behind the code."""

from __future__ import annotations

from sqlalchemy import Connection

from shared.database.gateway import Gateway, operation
from shared.database.queries import run
from shared.errors import SchemaOutOfDate

__all__ = ["SCHEMA_REVISION", "SchemaQueries"]

# The newest Alembic revision under shared/database/migrations/versions; a test keeps the two in step.
SCHEMA_REVISION = "0014"


def _revision(conn: Connection) -> str | None:
    if not run(conn, "select_alembic_version_exists").value("present"):
        return None
    revisions = run(conn, "select_schema_revision").column("revision")
    return revisions[0] if revisions else None


class SchemaQueries(Gateway):
    @operation()
    def schema_revision(self) -> str | None:
        """The revision the database is at, or None when no migration has run."""
        with self.engine.connect() as conn:
            return _revision(conn)

    @operation()
    def check_schema(self) -> str:
        """The database's revision; SchemaOutOfDate unless it is SCHEMA_REVISION or newer."""
        with self.engine.connect() as conn:
            revision = _revision(conn)
        if revision is None or revision < SCHEMA_REVISION:
            raise SchemaOutOfDate(
                f"the database schema is at revision {revision or 'none'}, this code needs {SCHEMA_REVISION}: "
                "run `jobservice migrate` (`make migrate` in a checkout) against DATABASE_URL first"
            )
        return revision
