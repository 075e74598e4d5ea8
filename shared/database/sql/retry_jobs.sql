-- retry_jobs: FAILED or CANCELLED jobs among :job_ids become READY again, as if newly submitted (their
-- attempt history stays: job_attempts numbers on from it). A job's webhook is delivered again when it
-- finishes again (a new delivery job); the old delivery is no longer its own.
-- RetryJob passes one id; each batch of RetryJobs a page of select_matching_jobs. A job whose
-- unique_key another unfinished job holds violates jobs_unique_key_active_uq (the gateway skips it).
UPDATE jobs
SET status = 'READY',
    run_at = now(),
    attempts = 0,
    cancel_requested = false,
    error_message = NULL,
    result = NULL,
    started_at = NULL,
    finished_at = NULL,
    lease_owner = NULL,
    lease_token = NULL,
    lease_expires_at = NULL,
    progress_percent = NULL,
    progress_message = NULL,
    progress_at = NULL,
    callback_job_id = NULL,
    updated_at = now()
WHERE job_id = ANY(CAST(:job_ids AS bigint[])) AND status IN ('FAILED', 'CANCELLED')
RETURNING job_id
