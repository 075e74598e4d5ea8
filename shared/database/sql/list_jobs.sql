-- list_jobs: newest first, keyset-paginated on job_id. Bind values are inlined by the driver, so
-- the planner sees the NULL tests as constants and picks the (status|type, job_id DESC) index.
-- jobs_shown adds each job's webhook delivery job: one primary-key lookup per returned row, none for
-- jobs without a callback.
SELECT *
FROM jobs_shown
WHERE (CAST(:status AS job_status) IS NULL OR status = CAST(:status AS job_status))
  AND (CAST(:type AS text) IS NULL OR type = :type)
  AND (CAST(:before_job_id AS bigint) IS NULL OR job_id < :before_job_id)
ORDER BY job_id DESC
LIMIT :limit
