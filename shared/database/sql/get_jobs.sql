-- get_jobs: several jobs by id (WatchJob polls every watched job with one statement).
SELECT * FROM jobs WHERE job_id = ANY(CAST(:job_ids AS bigint[]))
