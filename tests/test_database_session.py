"""What each process says at start about its connections (shared/database/engine.py): the pooler mode, the
server, and a warning naming the fix when the session lacks the timezone or statement timeout it needs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import text

from shared.database.engine import create_database_engine


def connect_once(url: str, **options: Any) -> None:
    engine = create_database_engine(url, "tests-session", **options)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        with engine.connect() as conn:  # a second connection: the report is made once per engine
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def reports(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "shared.database.engine"]


def test_a_direct_connection_reports_its_mode_and_server_and_has_what_it_needs(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="shared.database.engine"):
        connect_once(db)
    (record,) = reports(caplog)
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert message.startswith("database: DATABASE_POOLER=none, direct")
    assert "PostgreSQL " in message and "statement_timeout 30s" in message


def test_behind_a_pooler_a_missing_setting_is_named_with_its_fix(db: str, caplog: pytest.LogCaptureFixture) -> None:
    # No start-up options behind a pooler: the session has the role's statement_timeout, not this one.
    with caplog.at_level(logging.INFO, logger="shared.database.engine"):
        connect_once(db, pooler="transaction", statement_timeout_ms=12_345)
    info, warning = reports(caplog)
    assert info.getMessage().startswith("database: DATABASE_POOLER=transaction, through a transaction-mode pool")
    assert warning.levelno == logging.WARNING
    assert "ALTER ROLE CURRENT_USER SET statement_timeout = '12345ms'" in warning.getMessage()
