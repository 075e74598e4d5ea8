"""Crash detection: how long each executor may fall silent once its database session is gone.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Set by an executor that holds its liveness lock (a session-level advisory lock keyed by its
        -- executor_id, on its LISTEN session): once that lock is gone and the executor has not been seen
        -- for this many seconds, its jobs are lost and rescue_lost_jobs takes them back without waiting
        -- for their leases to expire (docs/reliability.md). NULL: the executor holds no session (behind a
        -- transaction pooler, or crash detection turned off), and only its leases' expiry counts. A
        -- nullable column without a default rewrites nothing.
        ALTER TABLE executors ADD COLUMN liveness_seconds double precision;
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE executors DROP COLUMN liveness_seconds")
