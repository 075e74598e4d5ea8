"""Shared fixtures: a fresh, migrated PostgreSQL database per test run and xdist worker."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from shared.database.engine import create_database_engine
from tests.support.database import fresh_database, server_url, truncate_jobs


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated database of this worker's own, dropped at the end of the run."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with fresh_database(server_url(), worker) as url:
        yield url


@pytest.fixture
def db(database_url: str) -> str:
    """The worker's database, emptied before the test."""
    truncate_jobs(database_url)
    return database_url


@pytest.fixture
def engine(db: str) -> Iterator[Engine]:
    engine = create_database_engine(db, "tests")
    yield engine
    engine.dispose()
