-- lease_limited_jobs: lease up to :limit READY jobs of ONE limited type, within its limits. Runs right
-- after lock_type_limits in the same transaction, so no other executor leases this type meanwhile and
-- the counts below are exact.
--   budget = least(:limit, max_running - running, rate_limit - starts in the sliding window)
-- Candidates are the first :scan_limit READY jobs of the type in the usual lease order (priority,
-- run_at, job_id; jobs_ready_type_idx); a job with a concurrency_key is taken only while fewer than
-- max_running_per_key jobs of its key run. Jobs are set PROCESSING exactly as lease_jobs does (same
-- columns; the first ten output columns are lease_jobs' RETURNING), the start times are appended to
-- recent_starts, and one summary row says what held the type back when fewer jobs were leased.
WITH limits AS MATERIALIZED (
    SELECT max_running,
           max_running_per_key,
           rate_limit,
           make_interval(secs => rate_period_seconds) AS period,
           recent_starts,
           -- Read after the lock was taken (the previous statement): start times of one type then
           -- only grow, and the window is counted at the moment the leases are recorded.
           clock_timestamp() AS t
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
    SELECT GREATEST(0, LEAST(CAST(:limit AS integer), running_left, rate_left)) AS n FROM budget
),
ranked AS MATERIALIZED (
    SELECT ready.job_id,
           ready.priority,
           ready.run_at,
           ready.concurrency_key IS NULL
               OR limits.max_running_per_key IS NULL
               OR COALESCE(running.n, 0) + row_number() OVER (
                      PARTITION BY ready.concurrency_key ORDER BY ready.priority, ready.run_at, ready.job_id
                  ) <= limits.max_running_per_key AS allowed
    FROM (
        SELECT job_id, priority, run_at, concurrency_key
        FROM jobs
        WHERE status = 'READY' AND type = :type  -- jobs_ready_type_idx
        ORDER BY priority, run_at, job_id
        LIMIT :scan_limit
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
    ORDER BY priority, run_at, job_id
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
    RETURNING j.job_id, j.type, j.priority, j.payload, j.attempts, j.max_attempts, j.timeout_seconds,
              CAST(j.lease_token AS text) AS lease_token,
              CAST(EXTRACT(EPOCH FROM j.started_at - j.run_at) AS double precision) AS queue_wait_seconds,
              j.traceparent
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
       budget.running_left,
       budget.rate_left,
       budget.rate_wait_seconds,
       -- More READY jobs than were leased: something (a limit, or the free slots) held some back.
       (SELECT count(*) FROM (
            SELECT 1 FROM jobs WHERE status = 'READY' AND type = :type  -- jobs_ready_type_idx
            ORDER BY priority, run_at, job_id
            LIMIT (SELECT n FROM slots) + 1
        ) AS waiting) AS ready_seen
FROM budget
LEFT JOIN leased ON true
