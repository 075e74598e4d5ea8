-- lease_limited_jobs: lease up to :limit READY jobs of ONE limited type, within its limits. Runs right
-- after lock_type_limits in the same transaction, so no other executor leases this type meanwhile and
-- the counts below are exact.
--   budget = least(:limit, max_running - running, rate_limit - starts in the sliding window)
-- Candidates are the first :scan_limit READY jobs of the type in the usual lease order (priority, the
-- fairness keys taking turns of :turn jobs from :start_key, due time: ready_jobs_in_lease_order, as in
-- lease_jobs); a job with a concurrency_key is taken only while fewer than max_running_per_key jobs of
-- its key run. Jobs are set PROCESSING exactly as lease_jobs does (same columns, read by name into
-- LeasedJob), the start times are appended to recent_starts, and every row (or the one row, when
-- nothing was leased) carries the summary of what held the type back (a pause of the type, in
-- job_type_pauses, holds back everything).
WITH limits AS MATERIALIZED (
    SELECT max_running,
           max_running_per_key,
           rate_limit,
           make_interval(secs => rate_period_seconds) AS period,
           recent_starts,
           -- Read after the lock was taken (the previous statement): start times of one type then
           -- only grow, and the window is counted at the moment the leases are recorded.
           clock_timestamp() AS t,
           -- A paused type leases nothing (PauseJobType), whatever its limits would allow.
           EXISTS (SELECT 1 FROM job_type_pauses WHERE type = :type) AS paused
    FROM job_type_limits
    WHERE type = :type
),
window_starts AS MATERIALIZED (
    SELECT ARRAY(
               SELECT s FROM unnest(limits.recent_starts) AS s WHERE s > limits.t - limits.period ORDER BY s
           ) AS starts
    FROM limits
),
running AS MATERIALIZED (
    SELECT concurrency_key, CAST(count(*) AS integer) AS n
    FROM jobs
    WHERE status = 'PROCESSING' AND type = :type
    GROUP BY concurrency_key
),
budget AS MATERIALIZED (
    SELECT limits.max_running - (SELECT COALESCE(sum(n), 0) FROM running) AS running_left,
           limits.rate_limit - cardinality(window_starts.starts) AS rate_left,
           -- When the rate is used up, the oldest start in the window leaves it first.
           CAST(EXTRACT(EPOCH FROM COALESCE(window_starts.starts[1], limits.t) + limits.period - limits.t)
                AS double precision) AS rate_wait_seconds
    FROM limits, window_starts
),
slots AS MATERIALIZED (
    SELECT CASE WHEN limits.paused THEN 0
                ELSE GREATEST(0, LEAST(CAST(:limit AS integer), budget.running_left, budget.rate_left))
           END AS n
    FROM budget, limits
),
ranked AS MATERIALIZED (
    SELECT ready.job_id,
           ready.lease_rank,
           ready.concurrency_key IS NULL
               OR limits.max_running_per_key IS NULL
               OR COALESCE(running.n, 0) + row_number() OVER (
                      PARTITION BY ready.concurrency_key ORDER BY ready.lease_rank
                  ) <= limits.max_running_per_key AS allowed
    FROM (
        SELECT ordered.job_id, ordered.lease_rank, jobs.concurrency_key
        FROM ready_jobs_in_lease_order(:type, :start_key, :scan_limit, :turn) AS ordered
        JOIN jobs ON jobs.job_id = ordered.job_id
    ) AS ready
    CROSS JOIN limits
    LEFT JOIN running ON running.concurrency_key = ready.concurrency_key
    -- Nothing to lease: do not scan at all.
    WHERE (SELECT n FROM slots) > 0
),
candidates AS MATERIALIZED (
    SELECT job_id
    FROM ranked
    WHERE allowed
    ORDER BY lease_rank
    LIMIT (SELECT n FROM slots)
),
leased AS (
    UPDATE jobs AS j
    SET status = 'PROCESSING',
        lease_owner = :owner,
        lease_token = gen_random_uuid(),
        lease_expires_at = limits.t + make_interval(secs => :lease_seconds),
        attempts = j.attempts + 1,
        started_at = limits.t,
        progress_percent = NULL,
        progress_message = NULL,
        progress_at = NULL,
        updated_at = limits.t
    FROM limits
    WHERE j.job_id = ANY(ARRAY(SELECT job_id FROM candidates))
      -- Candidates are not locked (locking every scanned row would write each one): a job cancelled
      -- meanwhile is re-checked here and skipped. No other executor leases this type now.
      AND j.status = 'READY'
    RETURNING j.job_id, j.type, j.priority, j.payload, j.attempts AS attempt, j.max_attempts, j.timeout_seconds,
              CAST(j.lease_token AS text) AS lease_token,
              CAST(EXTRACT(EPOCH FROM j.started_at - j.run_at) AS double precision) AS queue_wait_seconds,
              j.traceparent,
              j.fairness_key
),
recorded AS (
    UPDATE job_type_limits AS l
    SET recent_starts = CASE
            WHEN l.rate_limit IS NULL THEN CAST('{}' AS timestamptz[])
            ELSE window_starts.starts
                 || array_fill(limits.t, ARRAY[(SELECT CAST(count(*) AS integer) FROM leased)])
        END
    FROM limits, window_starts
    WHERE l.type = :type
      AND EXISTS (SELECT 1 FROM leased)
)
SELECT leased.*,
       (SELECT n FROM slots) AS slots,
       (SELECT paused FROM limits) AS paused,
       budget.running_left,
       budget.rate_left,
       budget.rate_wait_seconds,
       -- More READY jobs than were leased: something (a limit, or the free slots) held some back.
       (SELECT count(*) FROM (
            SELECT 1 FROM jobs WHERE status = 'READY' AND type = :type  -- jobs_ready_fair_idx
            LIMIT (SELECT n FROM slots) + 1
        ) AS waiting) AS ready_seen
FROM budget
LEFT JOIN leased ON true
