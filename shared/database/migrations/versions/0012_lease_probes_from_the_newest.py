"""Leasing finds a type's fairness groups from its newest READY entries, and takes one group without
counting it first (migration 0011's lease walked a type's oldest index entries three times per lease).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Why: a job leased stays in jobs_ready_fair_idx (a partial index on READY) as a dead entry until VACUUM
# removes it, and those entries sit at the front of their group, before every READY job (the oldest
# run_at). Any read of a group from its front steps over all of them. 0011 did so three times per lease
# of a type with one group (the first-group probe, the count of the group's first max_jobs jobs, and the
# lease's own SKIP LOCKED read), where the statement before it did so once. Between two vacuums, with
# 5,000 jobs/s submitted and leased, each lease grew slower until the executors fell behind
# (docs/benchmarks.md). Now:
#   ready_group_span: a type's last READY group and whether it is the only one, read from the newest
#     end of the index (backward scans: the newest entries are live), so it costs two index probes
#     however many dead entries the fronts hold;
#   ready_jobs_in_lease_order: the same answer as 0011's; a single group is told that way and read once,
#     several groups are left to 0011's function, renamed ready_jobs_in_turns;
#   lease_quotas: when one type has READY jobs and they form a single group, that group's quota is
#     max_jobs without reading the group (lease_jobs' own read of it stops at max_jobs anyway), so that
#     read is the only one from the front, as before fair share; otherwise 0011's function, renamed
#     counted_lease_quotas, counts the groups' jobs as before.
READY_GROUP_SPAN = """
        -- The last (priority, fairness_key) group of a type's READY jobs in lease order, and whether it
        -- is the only one; no row when the type has no READY job. Both probes read jobs_ready_fair_idx
        -- backwards, from the newest entries: the oldest are where the dead entries of leased jobs
        -- gather until VACUUM removes them.
        CREATE FUNCTION ready_group_span(job_type text)
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
        -- The group before it, if any, found from its newest entry.
        PERFORM FROM jobs AS j
        WHERE j.status = 'READY' AND j.type = job_type
          AND (j.priority, j.fairness_key) < (last_group.priority, last_group.fairness_key)
        ORDER BY j.priority DESC, j.fairness_key DESC
        LIMIT 1;
        RETURN QUERY SELECT last_group.priority, last_group.fairness_key, NOT FOUND;
        END
        $$;
"""

READY_JOBS_IN_LEASE_ORDER = """
        CREATE FUNCTION ready_jobs_in_lease_order(job_type text, start_key text, max_jobs integer, turn integer)
        RETURNS TABLE (job_id bigint, priority smallint, fairness_key text, run_at timestamptz, lease_rank bigint)
        LANGUAGE plpgsql STABLE ROWS 100
        SET plan_cache_mode = force_generic_plan
        SET jit = off
        AS $$
        #variable_conflict use_column
        DECLARE
            span record;
        BEGIN
        SELECT * INTO span FROM ready_group_span(job_type);
        IF NOT FOUND THEN
            RETURN;
        END IF;
        IF NOT span.only_group THEN
            RETURN QUERY SELECT * FROM ready_jobs_in_turns(job_type, start_key, max_jobs, turn);
            RETURN;
        END IF;
        RETURN QUERY
        SELECT j.job_id, j.priority, j.fairness_key, j.run_at, row_number() OVER (ORDER BY j.run_at, j.job_id)
        FROM jobs AS j
        WHERE j.status = 'READY' AND j.type = job_type AND j.priority = span.priority
          AND j.fairness_key = span.fairness_key
        ORDER BY j.run_at, j.job_id
        LIMIT max_jobs;
        END
        $$;
"""

LEASE_QUOTAS = """
        CREATE FUNCTION lease_quotas(types text[], start_keys text[], max_jobs integer, turn integer)
        RETURNS TABLE (type text, priority smallint, fairness_key text, jobs bigint)
        -- STRICT: no types (every one paused) is no rows, without running the body.
        LANGUAGE plpgsql STABLE STRICT ROWS 10
        SET plan_cache_mode = force_generic_plan
        SET jit = off
        AS $$
        #variable_conflict use_column
        DECLARE
            ready record;
        BEGIN
        -- The types that have READY jobs, with the span of their groups.
        SELECT array_agg(t.type) AS types, array_agg(t.start_key) AS start_keys,
               (array_agg(s.priority))[1] AS priority, (array_agg(s.fairness_key))[1] AS fairness_key,
               bool_and(s.only_group) AS only_group
        INTO ready
        FROM unnest(types, start_keys) AS t(type, start_key)
        CROSS JOIN LATERAL ready_group_span(t.type) AS s;
        IF ready.types IS NULL THEN
            RETURN;
        END IF;
        IF cardinality(ready.types) = 1 AND ready.only_group THEN
            -- One group of one type: up to max_jobs of it. Not counted: lease_jobs' read of the group
            -- stops at max_jobs or at its last READY job, whichever comes first.
            RETURN QUERY SELECT ready.types[1], ready.priority, ready.fairness_key, CAST(max_jobs AS bigint);
            RETURN;
        END IF;
        RETURN QUERY SELECT * FROM counted_lease_quotas(ready.types, ready.start_keys, max_jobs, turn);
        END
        $$;
"""


def upgrade() -> None:
    op.execute(
        """
        ALTER FUNCTION ready_jobs_in_lease_order(text, text, integer, integer) RENAME TO ready_jobs_in_turns;
        ALTER FUNCTION lease_quotas(text[], text[], integer, integer) RENAME TO counted_lease_quotas;
        """
        + READY_GROUP_SPAN
        + READY_JOBS_IN_LEASE_ORDER
        + LEASE_QUOTAS
    )


def downgrade() -> None:
    op.execute(
        """
        DROP FUNCTION lease_quotas(text[], text[], integer, integer);
        DROP FUNCTION ready_jobs_in_lease_order(text, text, integer, integer);
        DROP FUNCTION ready_group_span(text);
        ALTER FUNCTION ready_jobs_in_turns(text, text, integer, integer) RENAME TO ready_jobs_in_lease_order;
        ALTER FUNCTION counted_lease_quotas(text[], text[], integer, integer) RENAME TO lease_quotas;
        """
    )
