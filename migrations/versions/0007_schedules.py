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
    # Placeholder: filled in by the change that builds this feature.
    op.execute("SELECT 1")


def downgrade() -> None:
    pass
