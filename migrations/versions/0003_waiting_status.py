"""The WAITING status: a job waiting for the jobs it depends on.

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


def downgrade() -> None:
    # PostgreSQL cannot drop an enum value; an unused WAITING value is harmless.
    pass
