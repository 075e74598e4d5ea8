-- reserve_job_ids: :count fresh job ids from the identity sequence, so that a batch whose jobs depend
-- on each other knows every id before its insert (submit_jobs_with_ids).
SELECT nextval(pg_get_serial_sequence('jobs', 'job_id')) AS job_id FROM generate_series(1, :count)
