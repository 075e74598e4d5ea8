"""Rate and concurrency limits per job type, enforced when executors lease.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One row per limited job type. lease_jobs never leases a type that has a row here;
        -- lease_limited_jobs leases such a type with this row locked, so the counts are exact
        -- across any number of executors.
        CREATE TABLE job_type_limits (
            type                 text        PRIMARY KEY,
            max_running          integer     CHECK (max_running BETWEEN 1 AND 10000),
            max_running_per_key  integer     CHECK (max_running_per_key BETWEEN 1 AND 10000),
            rate_limit           integer     CHECK (rate_limit BETWEEN 1 AND 10000),
            rate_period_seconds  integer     NOT NULL DEFAULT 60
                                             CHECK (rate_period_seconds BETWEEN 1 AND 86400),
            -- Start times of the attempts inside the current window (at most rate_limit of them),
            -- trimmed on every lease of the type: the row stays small.
            recent_starts        timestamptz[] NOT NULL DEFAULT '{}',
            updated_at           timestamptz NOT NULL DEFAULT now()
        );

        -- Leasing reads READY jobs per type, in lease order (lease_jobs, lease_limited_jobs), so that
        -- READY jobs of types an executor does not take (another pool's, or held back by a limit) are
        -- never walked past. It replaces jobs_ready_idx (priority, run_at, job_id), which nothing
        -- reads any more. Partial on READY: a job enters it when it becomes READY (submit, promote,
        -- rescue, release).
        -- IF NOT EXISTS: on a big table, an operator may build it beforehand with CREATE INDEX CONCURRENTLY.
        CREATE INDEX IF NOT EXISTS jobs_ready_type_idx ON jobs (type, priority, run_at, job_id) WHERE status = 'READY';
        DROP INDEX jobs_ready_idx;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        CREATE INDEX jobs_ready_idx ON jobs (priority, run_at, job_id) WHERE status = 'READY';
        DROP INDEX jobs_ready_type_idx;
        DROP TABLE job_type_limits;
        """
    )
