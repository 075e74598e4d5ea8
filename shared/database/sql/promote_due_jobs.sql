-- promote_due_jobs: PENDING jobs whose run_at has come become READY, earliest first, at most :limit
-- per statement (jobs_pending_idx). SKIP LOCKED leaves a job that is being cancelled right now to the
-- next pass instead of waiting for it. run_at is kept, so a job that waited longest leases first.
WITH due AS (
    SELECT job_id
    FROM jobs
    WHERE status = 'PENDING' AND run_at <= now()
    ORDER BY run_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs
SET status = 'READY',
    updated_at = now()
FROM due
WHERE jobs.job_id = due.job_id
RETURNING jobs.job_id,
          CAST(EXTRACT(EPOCH FROM clock_timestamp() - jobs.run_at) AS double precision) AS lateness_seconds
