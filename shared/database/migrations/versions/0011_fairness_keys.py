"""Fair share: a fairness key per job, and READY jobs leased round-robin across keys (docs/fairness.md).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# jobs_shown as 0005 made it: its j.* is expanded when the view is made, so it is made again around the
# column's coming and going.
JOBS_SHOWN = """
        CREATE VIEW jobs_shown AS
        SELECT j.*,
               d.status AS callback_delivery_status,
               d.attempts AS callback_delivery_attempts,
               d.error_message AS callback_delivery_error,
               d.finished_at AS callback_delivery_finished_at,
               (j.callback_job_id IS NOT NULL AND d.job_id IS NULL) AS callback_delivery_pruned
        FROM jobs AS j
        LEFT JOIN jobs AS d ON d.job_id = j.callback_job_id;
"""


def upgrade() -> None:
    op.execute(
        """
        -- '' is "no key": the jobs without one form one group of their own. Not NULL, so that the lease
        -- can read a group as an equality on this column and the index below still gives the group in
        -- (run_at, job_id) order (an IS NULL condition does not). COLLATE "C": keys compare byte by byte,
        -- faster than by locale, and in the order executors compare them (Python's str order), which is
        -- how an executor knows where its round-robin stopped. A constant default adds the column
        -- without rewriting the table.
        ALTER TABLE jobs ADD COLUMN IF NOT EXISTS fairness_key text COLLATE "C" NOT NULL DEFAULT '';

        -- Leasing reads READY jobs per type, then per priority, then per fairness key (the groups taken
        -- in turn), each in due order. It replaces jobs_ready_type_idx (type, priority, run_at, job_id):
        -- every READY job still has one entry in one READY index, so submits cost what they did, and a
        -- type without keys (all '') is read in the same order as before.
        -- IF NOT EXISTS: on a big table, an operator may build it beforehand with CREATE INDEX CONCURRENTLY.
        CREATE INDEX IF NOT EXISTS jobs_ready_fair_idx ON jobs (type, priority, fairness_key, run_at, job_id)
            WHERE status = 'READY';
        DROP INDEX jobs_ready_type_idx;

        -- The first max_jobs READY jobs of one type in lease order, numbered 1.. by lease_rank:
        --   priority first; within a priority the fairness groups (one per key, '' for none) take
        --   turns of up to `turn` jobs each, oldest first (run_at, job_id): every group's first turn,
        --   then every group's second... The groups go in key order from start_key (where the caller's
        --   previous lease of the type stopped), wrapping around to the smaller keys.
        -- One group only (no keys, one priority: the usual case): its first jobs, in index order.
        -- Otherwise:
        --   groups: the groups in that order, each with its first turn: a loose index scan of
        --     jobs_ready_fair_idx (PostgreSQL 15 has no skip scan), one probe for the next key and one
        --     read of its first `turn` jobs, stopping once the first turns hold max_jobs jobs (or at
        --     max_jobs groups): no later group can be among the first max_jobs.
        --   more_turns: when the first turns of a priority (and the higher ones) hold fewer than
        --     max_jobs, the groups whose turn was full may have more: each gives up to what is missing,
        --     so the answer is exactly min(max_jobs, READY jobs), work-conserving.
        -- Reads about max_jobs + 2 x groups index entries, never a group's backlog beyond that. The
        -- caller picks `turn` (ceil(max_jobs / 8): a lease touches at most 8 groups with big backlogs,
        -- and small leases go one job per group); each group a lease touches costs index probes and
        -- rows spread over the table, so fewer, longer turns lease faster.
        -- PL/pgSQL for its plan cache: executors call this hundreds of times a second, and planning
        -- the statement cost more than running it (about 1 ms against 0.3 ms). A generic plan serves
        -- every call: each read is an index probe whatever the parameters. No JIT: no plan here runs
        -- long enough to repay it, and a generic plan's estimates (a LIMIT of a parameter) could cross
        -- its threshold.
        CREATE FUNCTION ready_jobs_in_lease_order(job_type text, start_key text, max_jobs integer, turn integer)
        RETURNS TABLE (job_id bigint, priority smallint, fairness_key text, run_at timestamptz, lease_rank bigint)
        LANGUAGE plpgsql STABLE ROWS 100
        SET plan_cache_mode = force_generic_plan
        SET jit = off
        AS $$
        #variable_conflict use_column
        DECLARE
            first_group record;
        BEGIN
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
        IF NOT FOUND THEN
            RETURN QUERY
            SELECT j.job_id, j.priority, j.fairness_key, j.run_at, row_number() OVER (ORDER BY j.run_at, j.job_id)
            FROM jobs AS j
            WHERE j.status = 'READY' AND j.type = job_type AND j.priority = first_group.priority
              AND j.fairness_key = first_group.fairness_key
            ORDER BY j.run_at, j.job_id
            LIMIT max_jobs;
            RETURN;
        END IF;
        RETURN QUERY
        WITH RECURSIVE groups (priority, fairness_key, wrapped, pos, run_ats, job_ids, total) AS (
            -- Before the first priority: the next step finds the first group.
            SELECT CAST(0 AS smallint), CAST('' AS text) COLLATE "C", true, 0,
                   CAST(NULL AS timestamptz[]), CAST(NULL AS bigint[]), CAST(0 AS bigint)
            UNION ALL
            SELECT nxt.priority, nxt.fairness_key, nxt.wrapped, g.pos + 1, first_turn.run_ats, first_turn.job_ids,
                   g.total + cardinality(first_turn.job_ids)
            FROM groups AS g
            CROSS JOIN LATERAL (
                -- The next key at this priority: from start_key up, or (wrapped) from the smallest up to it.
                (SELECT j.priority, j.fairness_key, g.wrapped
                 FROM jobs AS j
                 WHERE j.status = 'READY' AND j.type = job_type AND j.priority = g.priority
                   AND j.fairness_key > g.fairness_key
                   AND (NOT g.wrapped OR j.fairness_key < start_key COLLATE "C")
                 ORDER BY j.fairness_key
                 LIMIT 1)
                UNION ALL
                -- No key left from start_key up: wrap around to the smallest.
                (SELECT j.priority, j.fairness_key, true
                 FROM jobs AS j
                 WHERE NOT g.wrapped AND j.status = 'READY' AND j.type = job_type AND j.priority = g.priority
                   AND j.fairness_key < start_key COLLATE "C"
                 ORDER BY j.fairness_key
                 LIMIT 1)
                UNION ALL
                -- Every key of this priority seen: the next priority, from its first key from start_key.
                (SELECT first.*
                 FROM (SELECT j.priority FROM jobs AS j
                       WHERE j.status = 'READY' AND j.type = job_type AND j.priority > g.priority
                       ORDER BY j.priority
                       LIMIT 1) AS next_priority
                 CROSS JOIN LATERAL (
                     (SELECT j.priority, j.fairness_key, false
                      FROM jobs AS j
                      WHERE j.status = 'READY' AND j.type = job_type AND j.priority = next_priority.priority
                        AND j.fairness_key >= start_key COLLATE "C"
                      ORDER BY j.fairness_key
                      LIMIT 1)
                     UNION ALL
                     (SELECT j.priority, j.fairness_key, true
                      FROM jobs AS j
                      WHERE j.status = 'READY' AND j.type = job_type AND j.priority = next_priority.priority
                      ORDER BY j.fairness_key
                      LIMIT 1)
                     LIMIT 1) AS first)
                -- UNION ALL runs its branches in order, so this stops at the first that finds a group.
                LIMIT 1
            ) AS nxt
            CROSS JOIN LATERAL (
                SELECT array_agg(x.run_at ORDER BY x.run_at, x.job_id) AS run_ats,
                       array_agg(x.job_id ORDER BY x.run_at, x.job_id) AS job_ids
                FROM (SELECT j.run_at, j.job_id
                      FROM jobs AS j
                      WHERE j.status = 'READY' AND j.type = job_type AND j.priority = nxt.priority
                        AND j.fairness_key = nxt.fairness_key
                      ORDER BY j.run_at, j.job_id
                      LIMIT turn) AS x
            ) AS first_turn
            WHERE g.total < max_jobs AND g.pos < max_jobs
        ),
        first_turns AS (
            SELECT g.priority, g.fairness_key, g.pos, t.run_at, t.job_id, t.rn,
                   -- How many more this and the higher priorities could still take.
                   max_jobs - count(*) OVER (ORDER BY g.priority) AS missing
            FROM groups AS g
            CROSS JOIN LATERAL unnest(g.run_ats, g.job_ids) WITH ORDINALITY AS t(run_at, job_id, rn)
            WHERE g.pos > 0
        ),
        more_turns AS (
            SELECT f.priority, f.fairness_key, f.pos, m.run_at, m.job_id, f.rn + m.rn AS rn
            FROM first_turns AS f
            CROSS JOIN LATERAL (
                SELECT x.run_at, x.job_id, row_number() OVER (ORDER BY x.run_at, x.job_id) AS rn
                FROM (SELECT j.run_at, j.job_id
                      FROM jobs AS j
                      WHERE j.status = 'READY' AND j.type = job_type AND j.priority = f.priority
                        AND j.fairness_key = f.fairness_key AND (j.run_at, j.job_id) > (f.run_at, f.job_id)
                      ORDER BY j.run_at, j.job_id
                      LIMIT max_jobs) AS x
                LIMIT f.missing
            ) AS m
            -- Only a group whose first turn was full may have more.
            WHERE f.rn = turn AND f.missing > 0
        )
        SELECT u.job_id, u.priority, u.fairness_key, u.run_at,
               row_number() OVER (ORDER BY u.priority, (u.rn - 1) / turn, u.pos, u.rn) AS lease_rank
        FROM (SELECT priority, fairness_key, pos, run_at, job_id, rn FROM first_turns
              UNION ALL
              SELECT priority, fairness_key, pos, run_at, job_id, rn FROM more_turns) AS u
        ORDER BY lease_rank
        LIMIT max_jobs;
        END
        $$;

        -- What lease_jobs takes: how many jobs of each group (type, priority, fairness key) for a
        -- lease of max_jobs over several types: each type's first max_jobs in lease order
        -- (ready_jobs_in_lease_order), merged across types by priority and due time into the first
        -- max_jobs overall; a type's count in those is taken from the front of its own lease order.
        -- A function for the same plan cache (the statement around it costs what lease_jobs cost
        -- before fairness; written inline it cost half a millisecond more per lease).
        CREATE FUNCTION lease_quotas(types text[], start_keys text[], max_jobs integer, turn integer)
        RETURNS TABLE (type text, priority smallint, fairness_key text, jobs bigint)
        -- STRICT: no types (every one paused) is no rows, without running the body.
        LANGUAGE plpgsql STABLE STRICT ROWS 10
        SET plan_cache_mode = force_generic_plan
        SET jit = off
        AS $$
        #variable_conflict use_column
        BEGIN
        IF cardinality(types) = 1 THEN
            -- Nothing to merge (most executors take one type): 0.1 ms less per lease.
            RETURN QUERY
            SELECT types[1], o.priority, o.fairness_key, count(*)
            FROM ready_jobs_in_lease_order(types[1], start_keys[1], max_jobs, turn) AS o
            GROUP BY o.priority, o.fairness_key;
            RETURN;
        END IF;
        RETURN QUERY
        WITH ordered AS MATERIALIZED (
            SELECT t.type, o.priority, o.fairness_key, o.run_at, o.job_id, o.lease_rank
            FROM unnest(types, start_keys) AS t(type, start_key)
            CROSS JOIN LATERAL ready_jobs_in_lease_order(t.type, t.start_key, max_jobs, turn) AS o
        ),
        per_type AS (
            SELECT top.type, count(*) AS jobs
            FROM (SELECT o.type FROM ordered AS o ORDER BY o.priority, o.run_at, o.job_id LIMIT max_jobs) AS top
            GROUP BY top.type
        )
        SELECT o.type, o.priority, o.fairness_key, count(*)
        FROM ordered AS o
        JOIN per_type ON per_type.type = o.type AND o.lease_rank <= per_type.jobs
        GROUP BY o.type, o.priority, o.fairness_key;
        END
        $$;

        -- The view's j.* was expanded when it was made: make it again to show the new column.
        DROP VIEW jobs_shown;
        """
        + JOBS_SHOWN
        + """

        -- The webhook body shows the job as GET /jobs/{id} does: with its fairness_key (null for none).
        -- Built on the body as it was, so that a later migration adding a field does the same.
        ALTER FUNCTION job_callback_body(jobs, bigint) RENAME TO job_callback_body_without_fairness_key;
        CREATE FUNCTION job_callback_body(j jobs, delivery_job_id bigint) RETURNS jsonb
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
            SELECT jsonb_set(job_callback_body_without_fairness_key(j, delivery_job_id), '{job,fairness_key}',
                             COALESCE(to_jsonb(NULLIF(j.fairness_key, '')), 'null'))
        $$;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP FUNCTION job_callback_body(jobs, bigint);
        ALTER FUNCTION job_callback_body_without_fairness_key(jobs, bigint) RENAME TO job_callback_body;
        DROP FUNCTION lease_quotas(text[], text[], integer, integer);
        DROP FUNCTION ready_jobs_in_lease_order(text, text, integer, integer);
        CREATE INDEX jobs_ready_type_idx ON jobs (type, priority, run_at, job_id) WHERE status = 'READY';
        DROP INDEX jobs_ready_fair_idx;
        DROP VIEW jobs_shown;
        ALTER TABLE jobs DROP COLUMN fairness_key;
        """
        + JOBS_SHOWN
    )
