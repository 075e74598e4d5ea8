"""The index that serves ListJobs' fairness_key filter (and CancelJobs / RetryJobs by fairness key).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- A tenant's jobs, newest first (see docs/search.md), as 0008's key indexes. Partial: jobs without
        -- a fairness key store '' (0011), most of them, and are not in it. The column never changes after
        -- the insert.
        -- IF NOT EXISTS: on a big table, an operator may build it beforehand with CREATE INDEX CONCURRENTLY.
        CREATE INDEX IF NOT EXISTS jobs_fairness_key_idx ON jobs (fairness_key, job_id)
            WHERE fairness_key <> '';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX jobs_fairness_key_idx;
        """
    )
