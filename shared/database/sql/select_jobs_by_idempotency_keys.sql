-- select_jobs_by_idempotency_keys: the jobs that already own these keys.
SELECT * FROM jobs WHERE idempotency_key = ANY(CAST(:keys AS text[]))
