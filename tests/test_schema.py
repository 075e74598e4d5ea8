"""Migrations produce the schema the code expects, and processes refuse an older one."""

from __future__ import annotations

from pathlib import Path

import psycopg2
from alembic.script import ScriptDirectory

from shared.database.engine import create_database_engine
from shared.database.migrations import alembic_config
from shared.database.schema import SCHEMA_REVISION
from tests.support.database import fresh_database, migrate, server_url
from tests.support.gateway import gateway
from tests.support.processes import ServiceProcess, free_port


def alembic_head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_code_expects_the_newest_migration() -> None:
    assert alembic_head() == SCHEMA_REVISION


def test_migrations_apply_downgrade_and_apply_again() -> None:
    from alembic import command

    with fresh_database(server_url(), "migrate", migrated=False) as url:
        engine = create_database_engine(url, "tests")
        assert gateway(engine).schema_revision() is None
        migrate(url)
        assert gateway(engine).schema_revision() == SCHEMA_REVISION
        config = alembic_config(url)
        command.downgrade(config, "base")
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('jobs') IS NULL")
            assert cur.fetchone() == (True,)
        command.upgrade(config, "head")
        assert gateway(engine).schema_revision() == SCHEMA_REVISION
        engine.dispose()


def test_hot_queries_have_their_partial_indexes(database_url: str) -> None:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobs'")
        indexes = dict(cur.fetchall())
    ready = "(type, priority, fairness_key, run_at, job_id) WHERE (status = 'READY'::job_status)"
    assert ready in indexes["jobs_ready_fair_idx"]
    # Replaced: leasing reads READY jobs per type (0006), then per fairness key (0011); one READY index.
    assert "jobs_ready_idx" not in indexes and "jobs_ready_type_idx" not in indexes
    assert "WHERE (status = 'PENDING'::job_status)" in indexes["jobs_pending_idx"]
    assert "WHERE (status = 'PROCESSING'::job_status)" in indexes["jobs_processing_idx"]
    assert "UNIQUE" in indexes["jobs_idempotency_key_uq"]
    # The fairness_key search filter's (0013): a job without a key stores '' and is not in it.
    assert "(fairness_key, job_id) WHERE (fairness_key <> ''::text)" in indexes["jobs_fairness_key_idx"]


def test_api_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    with fresh_database(server_url(), "behind", migrated=False) as url:
        process = ServiceProcess(
            "services.api",
            {"DATABASE_URL": url, "GRPC_PORT": str(free_port()), "HTTP_PORT": str(free_port())},
            log_dir=tmp_path,
        ).start()
        assert process.process is not None
        code = process.process.wait(30)
        process.stop()
        assert code == 2
        assert "jobservice migrate" in process.output()


def test_api_refuses_a_bad_setting_naming_the_variable(tmp_path: Path, database_url: str) -> None:
    process = ServiceProcess(
        "services.api", {"DATABASE_URL": database_url, "GRPC_PORT": "fifty"}, log_dir=tmp_path
    ).start()
    assert process.process is not None
    assert process.process.wait(30) == 2
    process.stop()
    assert "GRPC_PORT" in process.output()


def test_jobs_shown_has_every_column_of_jobs(database_url: str) -> None:
    """The view the api reads jobs from expands "j.*" when it is created: a migration that adds a column
    to jobs must create it again, or the api would silently stop showing the new column."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        columns = {}
        for table in ("jobs", "jobs_shown"):
            cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
                (table,),
            )
            columns[table] = [name for (name,) in cur.fetchall()]
    conn.close()
    assert columns["jobs_shown"][: len(columns["jobs"])] == columns["jobs"]
    assert "callback_delivery_status" in columns["jobs_shown"]
