"""The WAITING status, and the plain columns the features of issue 9 store on each job.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A value added to an enum cannot be used in the transaction that added it, so it gets a
    # revision of its own (Alembic commits each revision); later revisions index and use it.
    op.execute("ALTER TYPE job_status ADD VALUE IF NOT EXISTS 'WAITING' BEFORE 'PENDING'")
    # Nullable columns or constant defaults: catalog-only changes, instant on a table of any size.
    op.execute(
        """
        ALTER TABLE jobs
            ADD COLUMN depends_on bigint[] NOT NULL DEFAULT '{}',
            ADD COLUMN pending_dependencies integer NOT NULL DEFAULT 0,
            ADD COLUMN callback_url text,
            ADD COLUMN concurrency_key text,
            ADD COLUMN unique_key text,
            ADD COLUMN schedule_name text;
        """
    )


def downgrade() -> None:
    # PostgreSQL cannot drop an enum value; an unused WAITING value is harmless.
    op.execute(
        """
        ALTER TABLE jobs
            DROP COLUMN depends_on, DROP COLUMN pending_dependencies, DROP COLUMN callback_url,
            DROP COLUMN concurrency_key, DROP COLUMN unique_key, DROP COLUMN schedule_name;
        """
    )
