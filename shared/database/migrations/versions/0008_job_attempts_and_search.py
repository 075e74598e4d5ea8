"""Attempt history (job_attempts), and the indexes that serve ListJobs' search filters.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- How an attempt ended. A running attempt is not stored: it is the job's own PROCESSING row
        -- (list_job_attempts shows it as RUNNING).
        CREATE TYPE job_attempt_outcome AS ENUM ('COMPLETED', 'FAILED', 'TIMED_OUT', 'CANCELLED', 'LOST');

        -- One row per ended attempt, written in the transaction that ended it: by complete_jobs' own
        -- statement for the executor's outcomes, by record_lost_attempts after rescue_expired_leases.
        -- attempt counts every attempt the job ever made, RetryJob's included (jobs.attempts starts
        -- again from zero there); an attempt handed back at shutdown (release_leases) is not one.
        -- No foreign key: prune_finished_jobs deletes a job's attempts in the statement that deletes it,
        -- and a cascade would cost retention a trigger call per row.
        CREATE TABLE job_attempts (
            job_id         bigint              NOT NULL,
            attempt        integer             NOT NULL,
            executor_id    text,
            started_at     timestamptz,
            finished_at    timestamptz         NOT NULL,
            outcome        job_attempt_outcome NOT NULL,
            error_type     text,
            error_message  text,
            -- Formatted by the executor, at most 16 KiB (the innermost frames).
            traceback      text,
            PRIMARY KEY (job_id, attempt)
        );

        -- ListJobs' search filters, newest first within each (see docs/search.md). The key indexes
        -- are partial: jobs without the key, most of them, are not in them and cost nothing. None of
        -- these columns ever changes after the insert.
        CREATE INDEX IF NOT EXISTS jobs_unique_key_idx ON jobs (unique_key, job_id)
            WHERE unique_key IS NOT NULL;
        CREATE INDEX IF NOT EXISTS jobs_concurrency_key_idx ON jobs (concurrency_key, job_id)
            WHERE concurrency_key IS NOT NULL;
        CREATE INDEX IF NOT EXISTS jobs_schedule_name_idx ON jobs (schedule_name, job_id)
            WHERE schedule_name IS NOT NULL;
        -- created_after / created_before: pages of a time-filtered list are ordered by (created_at,
        -- job_id), so this index serves both the range and the order, and a page reads only its rows.
        -- IF NOT EXISTS: on a big table, an operator may build these beforehand with CREATE INDEX CONCURRENTLY.
        CREATE INDEX IF NOT EXISTS jobs_created_at_idx ON jobs (created_at, job_id);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX jobs_created_at_idx;
        DROP INDEX jobs_schedule_name_idx;
        DROP INDEX jobs_concurrency_key_idx;
        DROP INDEX jobs_unique_key_idx;
        DROP TABLE job_attempts;
        DROP TYPE job_attempt_outcome;
        """
    )
