"""Progress reported by a running handler: percent, message, and when it was reported.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns without defaults: a catalog-only change, instant on a table of any size.
    op.execute(
        """
        ALTER TABLE jobs
            ADD COLUMN progress_percent smallint CHECK (progress_percent BETWEEN 0 AND 100),
            ADD COLUMN progress_message text,
            ADD COLUMN progress_at timestamptz;
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE jobs DROP COLUMN progress_percent, DROP COLUMN progress_message, DROP COLUMN progress_at;")
