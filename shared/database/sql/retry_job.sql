-- retry_job: a FAILED or CANCELLED job becomes READY again, as if newly submitted. Its webhook is
-- delivered again when it finishes again (a new delivery job); the old delivery is no longer its own.
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
WHERE job_id = :job_id AND status IN ('FAILED', 'CANCELLED')
RETURNING *
