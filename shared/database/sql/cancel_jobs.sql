-- cancel_jobs: WAITING, PENDING or READY jobs among :job_ids become CANCELLED at once; PROCESSING ones
-- get cancel_requested, and the executor holding the lease stops the handler and writes CANCELLED (a job
-- whose cancel was requested already is left alone, so a repeated call changes nothing). Jobs waiting on
-- a cancelled one are cancelled by the release_job_dependents trigger in the same transaction.
-- CancelJob passes one id; each batch of CancelJobs a page of select_matching_jobs. The statuses are
-- checked again on the row version the UPDATE locked: a job that finished meanwhile is skipped.
UPDATE jobs
SET status = CASE WHEN status = 'PROCESSING' THEN status ELSE 'CANCELLED' END,
    cancel_requested = (status = 'PROCESSING'),
    finished_at = CASE WHEN status = 'PROCESSING' THEN NULL ELSE now() END,
    error_message = CASE WHEN status = 'PROCESSING' THEN error_message ELSE 'cancelled by request' END,
    pending_dependencies = 0,
    updated_at = now()
-- ANY(array): primary-key lookups, never a scan.
WHERE job_id = ANY(CAST(:job_ids AS bigint[]))
  AND (status IN ('WAITING', 'PENDING', 'READY') OR (status = 'PROCESSING' AND NOT cancel_requested))
RETURNING job_id
