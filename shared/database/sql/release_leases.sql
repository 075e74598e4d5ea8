-- release_leases: an executor shutting down hands back the jobs it could not finish. They become
-- READY again as if never started (the attempt is not counted), or CANCELLED when a cancel was
-- requested meanwhile. Guarded by the lease token like every write to a leased job.
UPDATE jobs AS j
SET status = CASE WHEN j.cancel_requested THEN 'CANCELLED'::job_status ELSE 'READY'::job_status END,
    attempts = GREATEST(j.attempts - 1, 0),
    error_message = CASE WHEN j.cancel_requested THEN 'cancelled by request' ELSE j.error_message END,
    finished_at = CASE WHEN j.cancel_requested THEN now() END,
    started_at = NULL,
    lease_owner = NULL,
    lease_token = NULL,
    lease_expires_at = NULL,
    updated_at = now()
FROM unnest(CAST(:job_ids AS bigint[]), CAST(:lease_tokens AS uuid[])) AS h(job_id, lease_token)
WHERE j.job_id = h.job_id
  AND j.lease_token = h.lease_token
  AND j.status = 'PROCESSING'
RETURNING j.job_id, j.status
