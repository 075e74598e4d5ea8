-- get_jobs: several jobs by id (WatchJob polls every watched job with one statement), as get_job reads them.
SELECT * FROM jobs_shown WHERE job_id = ANY(CAST(:job_ids AS bigint[]))
