"""Fresh PostgreSQL databases for tests: one per test run and xdist worker, migrated with Alembic."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from shared.database import apply_migrations

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """TEST_DATABASE_URL: a server where the tests may create and drop databases."""
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_SERVER_URL


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _admin(url: str) -> Any:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


def migrate(database_url: str) -> None:
    """The migrations up to the newest, as `jobservice migrate` applies them."""
    apply_migrations(database_url)


@contextmanager
def fresh_database(base_url: str, label: str, migrated: bool = True) -> Iterator[str]:
    """Create a uniquely named database on the server at ``base_url``; drop it afterwards."""
    name = f"jobs_test_{label}_{uuid.uuid4().hex[:8]}"
    admin = _admin(base_url)
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        url = with_database(base_url, name)
        if migrated:
            migrate(url)
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def truncate_jobs(database_url: str) -> None:
    """Empty the jobs tables between tests that share one database."""
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            # A transaction of its own, and DELETE (row locks) rather than TRUNCATE: a running executor
            # locks job_type_limits then jobs, and locks taken in the other order could deadlock.
            cur.execute("DELETE FROM job_type_limits")
            cur.execute("DELETE FROM job_type_pauses")
        with conn, conn.cursor() as cur:
            cur.execute("TRUNCATE jobs, job_counts, job_schedules, job_dependencies, job_attempts RESTART IDENTITY")
    finally:
        conn.close()


def sql(url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own (autocommit, closed afterwards); its rows, if any."""
    conn = psycopg2.connect(url, connect_timeout=10)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall()) if cur.description is not None else []
    finally:
        conn.close()
