-- heartbeat_leases: extend the leases an executor still holds, and report for every lease it asked
-- about whether it still holds it (the token matches) and whether a cancel was requested.
WITH held AS (
    SELECT job_id, lease_token
    FROM unnest(CAST(:job_ids AS bigint[]), CAST(:lease_tokens AS uuid[])) AS t(job_id, lease_token)
), extended AS (
    UPDATE jobs AS j
    SET lease_expires_at = now() + make_interval(secs => :lease_seconds),
        updated_at = now()
    FROM held AS h
    WHERE j.job_id = h.job_id
      AND j.lease_token = h.lease_token
      AND j.status = 'PROCESSING'
    RETURNING j.job_id, j.cancel_requested
)
SELECT h.job_id,
       e.job_id IS NOT NULL AS held,
       COALESCE(e.cancel_requested, false) AS cancel_requested
FROM held AS h
LEFT JOIN extended AS e ON e.job_id = h.job_id
