-- get_jobs: several jobs by id (WatchJob polls every watched job with one statement), each with its
-- webhook's delivery job as get_job reads it.
SELECT j.*,
       d.status AS callback_delivery_status,
       d.attempts AS callback_delivery_attempts,
       d.error_message AS callback_delivery_error,
       d.finished_at AS callback_delivery_finished_at,
       (j.callback_job_id IS NOT NULL AND d.job_id IS NULL) AS callback_delivery_pruned
FROM jobs AS j
LEFT JOIN jobs AS d ON d.job_id = j.callback_job_id
WHERE j.job_id = ANY(CAST(:job_ids AS bigint[]))
