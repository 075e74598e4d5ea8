"""ready_group_span finds a type's first READY group from the front of its index and asks whether
another group follows it, instead of reading from the newest entries (migration 0012).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Why: 0012 read jobs_ready_fair_idx backwards from the newest entries to keep clear of the dead entries
# of leased jobs at each group's front. But under a steady stream of submits the newest entries are the
# ones not yet committed (at 5,000 jobs/s, up to about 1,600 in open transactions), and each one costs
# a heap visit on every lease; the executors fell behind where the statement before fair share kept up
# (docs/benchmarks.md). The front is read by the lease anyway, and a scan there marks the dead entries
# it meets (LP_DEAD), so the next read of the front steps over them without visiting the heap. Now:
#   1. the first group in lease order: one read from the front (the lease's own read follows it);
#   2. whether another group follows: a descent to just past the first group's last entry, which reads
#      only the next group's first entries, never the first group's newest (uncommitted) ones.
# The answer's meaning changes only where callers do not look: with one group, the first group is the
# last; with several, callers use only only_group (false).
READY_GROUP_SPAN = """
        CREATE OR REPLACE FUNCTION ready_group_span(job_type text)
        RETURNS TABLE (priority smallint, fairness_key text, only_group boolean)
        LANGUAGE plpgsql STABLE ROWS 1
        SET plan_cache_mode = force_generic_plan
        SET jit = off
        AS $$
        #variable_conflict use_column
        DECLARE
            first_group record;
        BEGIN
        -- The first (priority, fairness_key) group of a type's READY jobs in lease order, and whether it
        -- is the only one; no row when the type has no READY job (migration 0014).
        SELECT j.priority, j.fairness_key INTO first_group
        FROM jobs AS j
        WHERE j.status = 'READY' AND j.type = job_type
        ORDER BY j.priority, j.fairness_key
        LIMIT 1;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        PERFORM FROM jobs AS j
        WHERE j.status = 'READY' AND j.type = job_type
          AND (j.priority, j.fairness_key) > (first_group.priority, first_group.fairness_key)
        ORDER BY j.priority, j.fairness_key
        LIMIT 1;
        RETURN QUERY SELECT first_group.priority, first_group.fairness_key, NOT FOUND;
        END
        $$;
"""

# 0012's function, as it was.
READY_GROUP_SPAN_0012 = """
        CREATE OR REPLACE FUNCTION ready_group_span(job_type text)
        RETURNS TABLE (priority smallint, fairness_key text, only_group boolean)
        LANGUAGE plpgsql STABLE ROWS 1
        SET plan_cache_mode = force_generic_plan
        SET jit = off
        AS $$
        #variable_conflict use_column
        DECLARE
            last_group record;
        BEGIN
        SELECT j.priority, j.fairness_key INTO last_group
        FROM jobs AS j
        WHERE j.status = 'READY' AND j.type = job_type
        ORDER BY j.priority DESC, j.fairness_key DESC
        LIMIT 1;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        PERFORM FROM jobs AS j
        WHERE j.status = 'READY' AND j.type = job_type
          AND (j.priority, j.fairness_key) < (last_group.priority, last_group.fairness_key)
        ORDER BY j.priority DESC, j.fairness_key DESC
        LIMIT 1;
        RETURN QUERY SELECT last_group.priority, last_group.fairness_key, NOT FOUND;
        END
        $$;
"""


def upgrade() -> None:
    op.execute(READY_GROUP_SPAN)


def downgrade() -> None:
    op.execute(READY_GROUP_SPAN_0012)
