-- list_jobs: newest first, keyset-paginated on job_id. Bind values are inlined by the driver, so
-- the planner sees the NULL tests as constants and picks the (status|type, job_id DESC) index.
-- Each job's webhook delivery job (as get_job reads it) is one primary-key lookup per returned row,
-- none for jobs without a callback.
SELECT j.*,
       d.status AS callback_delivery_status,
       d.attempts AS callback_delivery_attempts,
       d.error_message AS callback_delivery_error,
       d.finished_at AS callback_delivery_finished_at,
       (j.callback_job_id IS NOT NULL AND d.job_id IS NULL) AS callback_delivery_pruned
FROM jobs AS j
LEFT JOIN jobs AS d ON d.job_id = j.callback_job_id
WHERE (CAST(:status AS job_status) IS NULL OR j.status = CAST(:status AS job_status))
  AND (CAST(:type AS text) IS NULL OR j.type = :type)
  AND (CAST(:before_job_id AS bigint) IS NULL OR j.job_id < :before_job_id)
ORDER BY j.job_id DESC
LIMIT :limit
