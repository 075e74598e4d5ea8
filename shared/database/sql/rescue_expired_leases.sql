-- rescue_expired_leases: PROCESSING jobs whose executor stopped heartbeating (lease expired), at most
-- :limit per statement (jobs_processing_idx). The attempt counts: attempts went up when the job was
-- leased. A job whose cancel was requested ends CANCELLED; one with no attempts left ends FAILED; any
-- other goes back to READY at once. SKIP LOCKED: a row locked right now is being heartbeated or
-- completed by its executor, which is then alive after all. The outcome is computed in SET, from the
-- row version this statement locked, not from its snapshot (a cancel may have landed in between).
WITH expired AS (
    SELECT job_id
    FROM jobs
    WHERE status = 'PROCESSING' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs
SET status = CAST(CASE
                      WHEN cancel_requested THEN 'CANCELLED'
                      WHEN attempts >= max_attempts THEN 'FAILED'
                      ELSE 'READY'
                  END AS job_status),
    run_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN run_at ELSE now() END,
    finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN now() END,
    error_message = CASE
                        WHEN cancel_requested THEN 'cancelled by request'
                        ELSE format('lease expired: executor %s stopped heartbeating (attempt %s of %s)',
                                    coalesce(lease_owner, 'unknown'), attempts, max_attempts)
                    END,
    lease_owner = NULL,
    lease_token = NULL,
    lease_expires_at = NULL,
    updated_at = now()
FROM expired
WHERE jobs.job_id = expired.job_id
RETURNING jobs.job_id, jobs.type, jobs.status, jobs.attempts, jobs.max_attempts, jobs.error_message
