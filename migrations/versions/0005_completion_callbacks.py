"""Completion webhooks: a callback URL per job, delivered by a jobs.callback job.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Placeholder: filled in by the change that builds this feature.
    op.execute("SELECT 1")


def downgrade() -> None:
    pass
