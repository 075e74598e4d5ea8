"""Alembic environment: migrations run against the configured URL (DATABASE_URL by default), one
transaction per revision. The configuration comes from ``shared.database.migrations.alembic_config``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from shared.database.engine import sqlalchemy_url
from shared.settings import DatabaseSettings

config = context.config
url = sqlalchemy_url(config.attributes.get("database_url") or DatabaseSettings.from_env().database_url)


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (``jobservice migrate --sql``)."""
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply migrations over a real connection."""
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
