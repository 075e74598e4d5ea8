-- list_job_attempts: the attempts of one job, oldest first: the ended ones from job_attempts (its
-- primary key), then the running one, which is the job's own PROCESSING row. One row with a NULL attempt
-- when the job exists but never ran; none when there is no such job.
SELECT a.attempt, a.executor_id, a.started_at, a.finished_at, a.outcome, a.error_type, a.error_message,
       a.traceback
FROM jobs AS j
LEFT JOIN LATERAL (
    SELECT attempt, executor_id, started_at, finished_at, CAST(outcome AS text) AS outcome, error_type,
           error_message, traceback
    FROM job_attempts
    WHERE job_id = j.job_id
    UNION ALL
    SELECT (SELECT COALESCE(max(attempt), 0) + 1 FROM job_attempts WHERE job_id = j.job_id),
           j.lease_owner, j.started_at, NULL, 'RUNNING', NULL, NULL, NULL
    WHERE j.status = 'PROCESSING'
) AS a ON true
WHERE j.job_id = :job_id
ORDER BY a.attempt
