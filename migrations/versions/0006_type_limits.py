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
    # Placeholder: filled in by the change that builds this feature.
    op.execute("SELECT 1")


def downgrade() -> None:
    pass
