"""Operator controls: paused job types, the executor registry, paused schedules.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One row per paused job type (PauseJobType); ResumeJobType deletes it. Leasing reads this
        -- table on every lease statement (lease_jobs, lease_limited_jobs): no executor starts a job of
        -- a paused type. Empty (the usual case) it costs a lease one read of an empty table.
        CREATE TABLE job_type_pauses (
            type       text        PRIMARY KEY,
            paused_at  timestamptz NOT NULL DEFAULT now()
        );

        -- One row per live executor (ListExecutors): written when it starts, refreshed with each
        -- heartbeat (expires_at = now + its lease period), deleted when it stops cleanly. A dead
        -- executor's row is no longer listed once expires_at passes, and is deleted by the next
        -- heartbeat of any executor.
        CREATE TABLE executors (
            executor_id   text        PRIMARY KEY,
            host          text        NOT NULL,
            pid           integer     NOT NULL,
            version       text        NOT NULL,
            types         text[]      NOT NULL,
            concurrency   integer     NOT NULL,
            running       integer     NOT NULL,
            started_at    timestamptz NOT NULL,
            last_seen_at  timestamptz NOT NULL,
            expires_at    timestamptz NOT NULL
        );

        -- PauseSchedule sets it, ResumeSchedule clears it; a paused schedule is never due. Adding a
        -- nullable column without a default rewrites nothing.
        ALTER TABLE job_schedules ADD COLUMN paused_at timestamptz;
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE job_schedules DROP COLUMN paused_at; DROP TABLE executors; DROP TABLE job_type_pauses")
