-- insert_job_dependencies: the unresolved edges of newly submitted WAITING jobs (job_id waits for
-- depends_on), after lock_job_dependencies locked every depends_on that is not a job of the same
-- submit.
INSERT INTO job_dependencies (depends_on, job_id)
SELECT * FROM unnest(CAST(:depends_on AS bigint[]), CAST(:job_ids AS bigint[]))
ON CONFLICT DO NOTHING
