-- lease_jobs: take up to :limit READY jobs of the given types for one executor, highest priority
-- first; within a type and priority the fairness keys take turns (docs/fairness.md), and within a key
-- the earliest due first. SKIP LOCKED lets many executors lease at once without waiting on each
-- other; the UPDATE hands each job a fresh token that fences its outcome.
-- Types with limits are never leased here (lease_limited_jobs does, within the limits).
--
-- Read per type (jobs_ready_fair_idx: type, priority, fairness_key, run_at, job_id), never along one
-- index of every READY job: READY jobs of types this executor does not take (another pool's, or a
-- type held back by its rate limit) would otherwise be walked past on every lease, and a backlog of
-- 100,000 of them made each lease 30-80 ms instead of under 1 ms.
-- 1. lease_quotas (migration 0011; index-only reads, no locks): how many jobs to take from each group
--    (type, priority, fairness key): each type's first :limit READY jobs in lease order (groups taking
--    turns of :turn jobs, from where this executor's last lease of the type stopped, :start_keys),
--    merged across types by priority and due time into the first :limit overall.
-- 2. candidates: each group's first quota jobs, locked with SKIP LOCKED. A job another executor is
--    leasing right now is skipped for the next one of the same group, so exactly as many rows are
--    locked as are leased, and a busy group never costs the others anything. Rows are locked as the
--    outer LIMIT pulls them, so the constant inner LIMIT only bounds the planner's estimates.
-- Paused types (job_type_pauses) are dropped from :types (with their :start_keys) before anything is
-- read, so their READY jobs neither start nor take the place of other types' jobs. With no type paused
-- that is one read of an empty table per statement (an InitPlan); with every type paused the arrays are
-- NULL and lease_quotas (STRICT) answers nothing.
WITH leasable AS (
    SELECT array_agg(t.type) AS types, array_agg(t.start_key) AS start_keys
    FROM unnest(CAST(:types AS text[]), CAST(:start_keys AS text[])) AS t(type, start_key)
    WHERE t.type <> ALL(ARRAY(SELECT type FROM job_type_pauses))
),
candidates AS (
    SELECT taken.job_id
    FROM leasable
    CROSS JOIN LATERAL lease_quotas(leasable.types, leasable.start_keys, :limit, :turn) AS quota
    CROSS JOIN LATERAL (
        SELECT locked.job_id
        FROM (
            SELECT job_id
            FROM jobs
            WHERE status = 'READY' AND type = quota.type AND priority = quota.priority
              AND fairness_key = quota.fairness_key
            ORDER BY run_at, job_id
            LIMIT :limit
            FOR UPDATE SKIP LOCKED
        ) AS locked
        LIMIT quota.jobs
    ) AS taken
)
UPDATE jobs AS j
SET status = 'PROCESSING',
    lease_owner = :owner,
    lease_token = gen_random_uuid(),
    lease_expires_at = statement_timestamp() + make_interval(secs => :lease_seconds),
    attempts = j.attempts + 1,
    -- statement_timestamp(), not now(): now() is when the transaction's BEGIN arrived, which can be before
    -- the promotion that made this job READY committed, so a job would seem to start before its time.
    started_at = statement_timestamp(),
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
  -- jobs_ready_fair_idx in order. The array is read once per statement (an InitPlan).
  AND j.type <> ALL(ARRAY(SELECT type FROM job_type_limits))
-- Plain values the executor needs and nothing more: turning timestamps and uuids into Python objects
-- costs more per row than the rest of leasing. started_at is the same for every row of the batch, so
-- ordering by queue wait (longest first) is ordering by run_at. Columns are read by name (LeasedJob's
-- fields), in any order.
RETURNING j.job_id, j.type, j.priority, j.payload, j.attempts AS attempt, j.max_attempts, j.timeout_seconds,
          CAST(j.lease_token AS text) AS lease_token,
          CAST(EXTRACT(EPOCH FROM j.started_at - j.run_at) AS double precision) AS queue_wait_seconds,
          j.traceparent,
          j.fairness_key
