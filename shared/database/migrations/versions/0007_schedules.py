"""Periodic (cron) schedules that the scheduler turns into jobs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new, small table: nothing here touches the jobs table or its hot paths. last_job_id has no
    # foreign key because retention deletes old jobs.
    op.execute(
        """
        CREATE TABLE job_schedules (
            schedule_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name          text        NOT NULL UNIQUE,
            cron          text        NOT NULL,
            time_zone     text        NOT NULL DEFAULT 'UTC',
            job_template  jsonb       NOT NULL,
            next_run_at   timestamptz NOT NULL,
            last_run_at   timestamptz,
            last_job_id   bigint,
            created_at    timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX job_schedules_next_run_at_idx ON job_schedules (next_run_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE job_schedules")
