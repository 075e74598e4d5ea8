-- check_leases: between heartbeats, a read-only look at the running jobs of an executor: is the lease
-- still ours (the token matches), and has someone asked to cancel the job?
SELECT h.job_id,
       j.job_id IS NOT NULL AS held,
       COALESCE(j.cancel_requested, false) AS cancel_requested
FROM unnest(CAST(:job_ids AS bigint[]), CAST(:lease_tokens AS uuid[])) AS h(job_id, lease_token)
LEFT JOIN jobs AS j
       ON j.job_id = h.job_id
      AND j.lease_token = h.lease_token
      AND j.status = 'PROCESSING'
