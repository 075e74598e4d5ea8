-- select_matching_jobs: one page of the jobs a filter selects (ListJobs, and each batch of CancelJobs and
-- RetryJobs), newest first, keyset-paginated after the previous page's last job. Bind values are
-- inlined by the driver, so the planner sees the NULL tests and :by_created_at as constants: the
-- filters not given vanish, and so does the CASE of the order that does not apply.
-- Without a time bound the order is job_id DESC, served by the index of the most selective filter given
-- ((status|type, job_id) from 0001, the unique, concurrency and schedule key indexes of 0008, the
-- fairness key index of 0013, or the idempotency key's unique index). With created_after or
-- created_before it is (created_at, job_id) DESC, so that jobs_created_at_idx serves the range and the
-- order together and a page stops after its rows instead of sorting the whole window. docs/search.md has
-- the plans on a million-row table.
-- Only ids come back: ListJobs reads the page's jobs with get_jobs, the bulk actions update them by id.
SELECT j.job_id, j.created_at
FROM jobs AS j
WHERE (CAST(:status AS job_status) IS NULL OR j.status = CAST(:status AS job_status))
  AND (CAST(:type AS text) IS NULL OR j.type = :type)
  AND (CAST(:idempotency_key AS text) IS NULL OR j.idempotency_key = :idempotency_key)
  AND (CAST(:unique_key AS text) IS NULL OR j.unique_key = :unique_key)
  AND (CAST(:concurrency_key AS text) IS NULL OR j.concurrency_key = :concurrency_key)
  -- A job without a fairness key stores '' (0011); a filter's key is never empty.
  AND (CAST(:fairness_key AS text) IS NULL OR j.fairness_key = :fairness_key)
  AND (CAST(:schedule AS text) IS NULL OR j.schedule_name = :schedule)
  AND (CAST(:created_after AS timestamptz) IS NULL OR j.created_at >= CAST(:created_after AS timestamptz))
  AND (CAST(:created_before AS timestamptz) IS NULL OR j.created_at < CAST(:created_before AS timestamptz))
  AND (CAST(:after_job_id AS bigint) IS NULL
       OR CASE WHEN :by_created_at
               THEN (j.created_at, j.job_id) < (CAST(:after_created_at AS timestamptz), CAST(:after_job_id AS bigint))
               ELSE j.job_id < CAST(:after_job_id AS bigint)
          END)
ORDER BY CASE WHEN :by_created_at THEN j.created_at END DESC, j.job_id DESC
LIMIT :limit
