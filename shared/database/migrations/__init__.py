"""The schema's Alembic migrations, shipped inside the package: ``jobservice migrate`` applies them.

``versions/`` holds one file per revision (``0001_create_jobs.py``...; the newest is SCHEMA_REVISION in
schema.py), ``env.py`` is Alembic's environment. No alembic.ini is needed: ``alembic_config`` builds
the configuration, from a checkout and from an installed wheel alike. A new migration is a new file in
``versions/`` numbered after the newest, with ``down_revision`` naming it; released ones are never edited.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["MIGRATIONS_DIR", "MigrationFailed", "alembic_config", "apply_migrations"]

MIGRATIONS_DIR = Path(__file__).resolve().parent


class MigrationFailed(Exception):
    """A migration could not be applied; the message is one line naming the cause."""


def alembic_config(database_url: str | None = None) -> Config:
    """Alembic's configuration for these migrations, against ``database_url`` (None: DATABASE_URL)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def apply_migrations(database_url: str | None = None, revision: str = "head", sql: bool = False) -> None:
    """Apply the migrations up to ``revision``; with ``sql``, print their SQL instead of running it.
    Alembic logs each step at INFO on the ``alembic`` logger. Raises MigrationFailed."""
    # Alembic announces each of its plugins at INFO as it is imported; only the migrations are news.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from alembic import command

    try:
        command.upgrade(alembic_config(database_url), revision, sql=sql)
    except Exception as error:
        # The driver's first line (unreachable server, refused login, a failing statement), not a traceback.
        cause = getattr(error, "orig", None) or error
        detail = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
        raise MigrationFailed(f"{type(cause).__name__}: {detail}") from error
