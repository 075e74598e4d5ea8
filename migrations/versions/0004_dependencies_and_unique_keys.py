"""Job dependencies (WAITING until they complete) and unique-while-active keys.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Placeholder: filled in by the change that builds this feature.
    op.execute("SELECT 1")


def downgrade() -> None:
    pass
