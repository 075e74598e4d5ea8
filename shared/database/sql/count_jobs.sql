-- count_jobs: jobs and attempts per (type, status), from the delta rows the triggers append.
SELECT type, status, sum(jobs)::bigint AS jobs, sum(attempts)::bigint AS attempts
FROM job_counts
GROUP BY type, status
HAVING sum(jobs) <> 0
