-- get_job: one job as the API shows it (jobs_shown: with its webhook's delivery job).
SELECT * FROM jobs_shown WHERE job_id = :job_id
