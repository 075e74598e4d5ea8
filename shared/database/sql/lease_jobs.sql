-- lease_jobs: take up to :limit READY jobs of the given types for one executor, highest priority
-- first, then due time, then id. SKIP LOCKED lets many executors lease at once without waiting on each
-- other; the UPDATE hands each job a fresh token that fences its outcome.
-- Types with limits are never leased here (lease_limited_jobs does, within the limits).
--
-- Read per type (jobs_ready_type_idx: type, priority, run_at, job_id), never along one index of every
-- READY job: READY jobs of types this executor does not take (another pool's, or a type held back by
-- its rate limit) would otherwise be walked past on every lease, and a backlog of 100,000 of them made
-- each lease 30-80 ms instead of under 1 ms.
-- 1. top: the first :limit READY jobs of each type, merged into the first :limit overall (index-only
--    reads, no locks). quota: how many of those each type has.
-- 2. candidates: each type's first quota jobs, locked with SKIP LOCKED. A job another executor is
--    leasing right now is skipped for the next one of the same type, so exactly as many rows are locked
--    as are leased, and a busy type never costs the others anything.
WITH top AS (
    SELECT first.type, first.priority, first.run_at, first.job_id
    FROM unnest(CAST(:types AS text[])) AS t(type)
    CROSS JOIN LATERAL (
        SELECT type, priority, run_at, job_id
        FROM jobs
        WHERE status = 'READY' AND type = t.type
        ORDER BY priority, run_at, job_id
        LIMIT :limit
    ) AS first
    ORDER BY first.priority, first.run_at, first.job_id
    LIMIT :limit
),
quota AS (
    SELECT type, count(*) AS jobs FROM top GROUP BY type
),
candidates AS (
    SELECT taken.job_id
    FROM quota
    CROSS JOIN LATERAL (
        SELECT job_id
        FROM jobs
        WHERE status = 'READY' AND type = quota.type
        ORDER BY priority, run_at, job_id
        LIMIT quota.jobs
        FOR UPDATE SKIP LOCKED
    ) AS taken
)
UPDATE jobs AS j
SET status = 'PROCESSING',
    lease_owner = :owner,
    lease_token = gen_random_uuid(),
    lease_expires_at = now() + make_interval(secs => :lease_seconds),
    attempts = j.attempts + 1,
    started_at = now(),
    -- A new attempt starts from nothing: the last attempt's progress no longer says anything.
    progress_percent = NULL,
    progress_message = NULL,
    progress_at = NULL,
    updated_at = now()
-- ANY(ARRAY(...)) rather than a join: always primary-key lookups, never a hash join that scans the
-- whole table (millions of finished rows) when the planner misjudges the batch.
WHERE j.job_id = ANY(ARRAY(SELECT job_id FROM candidates))
  -- Types with limits are leased only by lease_limited_jobs. Executors leave them out of :types, so
  -- this only matters while an executor's list is stale (up to a second after SetTypeLimits): such a
  -- candidate stays READY. Checked here and not in candidates, where any such condition (NOT EXISTS,
  -- <> ALL) wrecks the row estimate and the planner sorts every READY job instead of reading
  -- jobs_ready_type_idx in order. The array is read once per statement (an InitPlan).
  AND j.type <> ALL(ARRAY(SELECT type FROM job_type_limits))
-- Plain values the executor needs and nothing more: turning timestamps and uuids into Python objects
-- costs more per row than the rest of leasing. started_at is now() for every row of the batch, so
-- ordering by queue wait (longest first) is ordering by run_at.
RETURNING j.job_id, j.type, j.priority, j.payload, j.attempts, j.max_attempts, j.timeout_seconds,
          CAST(j.lease_token AS text) AS lease_token,
          CAST(EXTRACT(EPOCH FROM j.started_at - j.run_at) AS double precision) AS queue_wait_seconds,
          j.traceparent
