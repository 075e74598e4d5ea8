-- list_recent_failures: the latest FAILED jobs (jobs_finished_idx).
SELECT job_id, type, error_message, attempts, finished_at
FROM jobs
WHERE status = 'FAILED'
ORDER BY finished_at DESC
LIMIT :limit
