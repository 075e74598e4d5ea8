-- select_jobs_by_idempotency_keys: the jobs that already own these keys, as get_job reads them.
SELECT * FROM jobs_shown WHERE idempotency_key = ANY(CAST(:keys AS text[]))
