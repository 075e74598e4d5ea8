-- settle_submitted_jobs: the jobs just inserted by submit_jobs_with_ids get their real state: WAITING
-- (with the count of unfinished dependencies), CANCELLED (a dependency FAILED or was cancelled), or
-- READY (every dependency COMPLETED; PENDING while scheduled_at is ahead); a NULL status keeps the
-- inserted one. depends_on comes as '{1,2}' text per job because unnest flattens an array of arrays.
UPDATE jobs AS j
SET status = CASE WHEN t.status = 'READY' AND j.run_at > now() THEN 'PENDING'
                  ELSE coalesce(t.status, j.status) END,
    pending_dependencies = t.pending_dependencies,
    depends_on = CAST(t.depends_on AS bigint[]),
    has_dependents = j.has_dependents OR t.has_dependents,
    finished_at = CASE WHEN t.status = 'CANCELLED' THEN now() ELSE j.finished_at END,
    error_message = coalesce(t.error_message, j.error_message),
    updated_at = now()
FROM unnest(
        CAST(:job_ids AS bigint[]),
        CAST(:statuses AS job_status[]),
        CAST(:pending_dependencies AS integer[]),
        CAST(:depends_on AS text[]),
        CAST(:has_dependents AS boolean[]),
        CAST(:error_messages AS text[])
     ) AS t(job_id, status, pending_dependencies, depends_on, has_dependents, error_message)
WHERE j.job_id = t.job_id
RETURNING j.*
