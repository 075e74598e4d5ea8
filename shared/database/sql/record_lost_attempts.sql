-- record_lost_attempts: the one place an attempt is recorded LOST. Whatever takes a lease back from an
-- executor that is gone (rescue_lost_jobs) runs this in the same transaction, with the jobs it
-- took back, the executor each lease belonged to, when that attempt started, and why it was lost. The
-- attempt number follows the job's last recorded one (a probe of job_attempts' primary key), as in
-- complete_jobs.
INSERT INTO job_attempts (job_id, attempt, executor_id, started_at, finished_at, outcome, error_message)
SELECT l.job_id,
       COALESCE((SELECT max(a.attempt) FROM job_attempts AS a WHERE a.job_id = l.job_id), 0) + 1,
       l.executor_id, l.started_at, now(), 'LOST', :reason
FROM unnest(
        CAST(:job_ids AS bigint[]),
        CAST(:executor_ids AS text[]),
        CAST(:started_ats AS timestamptz[])
     ) AS l(job_id, executor_id, started_at)
