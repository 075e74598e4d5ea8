-- submit_jobs_with_ids: submit_jobs for a batch with dependencies, with ids from reserve_job_ids
-- (each job of :jobs also has job_id and waits).
-- Jobs with dependencies start WAITING; settle_submitted_jobs then gives them their real state once
-- the dependencies' states are known, and the caller notifies. Skipped rows (a taken idempotency key
-- or a held unique_key) are resolved by the caller exactly as for submit_jobs.
INSERT INTO jobs (job_id, type, status, priority, payload, idempotency_key, scheduled_at, run_at,
                  max_attempts, timeout_seconds, traceparent, callback_url, concurrency_key,
                  unique_key, schedule_name, fairness_key)
OVERRIDING SYSTEM VALUE
SELECT t.job_id,
       t.type,
       CASE WHEN t.waits THEN 'WAITING' WHEN t.scheduled_at > now() THEN 'PENDING' ELSE 'READY' END::job_status,
       t.priority,
       t.payload,
       t.idempotency_key,
       t.scheduled_at,
       CASE WHEN t.scheduled_at > now() THEN t.scheduled_at ELSE now() END,
       t.max_attempts,
       t.timeout_seconds,
       t.traceparent,
       t.callback_url,
       t.concurrency_key,
       t.unique_key,
       t.schedule_name,
       -- '' is "no key" (migration 0011)
       COALESCE(t.fairness_key, '')
FROM json_to_recordset(CAST(:jobs AS json))
     AS t(job_id bigint, waits boolean, type text, priority smallint, payload jsonb, idempotency_key text,
          scheduled_at timestamptz, max_attempts integer, timeout_seconds integer, traceparent text,
          callback_url text, concurrency_key text, unique_key text, schedule_name text, fairness_key text)
ORDER BY t.job_id
ON CONFLICT DO NOTHING
RETURNING *
