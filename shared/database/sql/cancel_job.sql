-- cancel_job: WAITING, PENDING or READY become CANCELLED at once; PROCESSING gets cancel_requested,
-- and the executor holding the lease stops the handler and writes CANCELLED. Jobs waiting on this one
-- are cancelled by the release_job_dependents trigger in the same transaction.
UPDATE jobs
SET status = CASE WHEN status = 'PROCESSING' THEN status ELSE 'CANCELLED' END,
    cancel_requested = (status = 'PROCESSING'),
    finished_at = CASE WHEN status = 'PROCESSING' THEN NULL ELSE now() END,
    error_message = CASE WHEN status = 'PROCESSING' THEN error_message ELSE 'cancelled by request' END,
    pending_dependencies = 0,
    updated_at = now()
WHERE job_id = :job_id AND status IN ('WAITING', 'PENDING', 'READY', 'PROCESSING')
RETURNING *
