-- submit_jobs_with_ids: submit_jobs for a batch with dependencies, with ids from reserve_job_ids.
-- Jobs with dependencies start WAITING; settle_submitted_jobs then gives them their real state once
-- the dependencies' states are known, and the caller notifies. Skipped rows (a taken idempotency key
-- or a held unique_key) are resolved by the caller exactly as for submit_jobs.
INSERT INTO jobs (job_id, type, status, priority, payload, idempotency_key, scheduled_at, run_at,
                  max_attempts, timeout_seconds, traceparent, callback_url, concurrency_key,
                  unique_key, schedule_name)
OVERRIDING SYSTEM VALUE
SELECT t.job_id,
       t.type,
       CASE WHEN t.waits THEN 'WAITING' WHEN t.scheduled_at > now() THEN 'PENDING' ELSE 'READY' END::job_status,
       t.priority,
       t.payload::jsonb,
       t.idempotency_key,
       t.scheduled_at,
       CASE WHEN t.scheduled_at > now() THEN t.scheduled_at ELSE now() END,
       t.max_attempts,
       t.timeout_seconds,
       t.traceparent,
       t.callback_url,
       t.concurrency_key,
       t.unique_key,
       t.schedule_name
FROM unnest(
        CAST(:job_ids AS bigint[]),
        CAST(:waits AS boolean[]),
        CAST(:types AS text[]),
        CAST(:priorities AS smallint[]),
        CAST(:payloads AS text[]),
        CAST(:idempotency_keys AS text[]),
        CAST(:scheduled_ats AS timestamptz[]),
        CAST(:max_attempts AS integer[]),
        CAST(:timeouts AS integer[]),
        CAST(:traceparents AS text[]),
        CAST(:callback_urls AS text[]),
        CAST(:concurrency_keys AS text[]),
        CAST(:unique_keys AS text[]),
        CAST(:schedule_names AS text[])
     ) AS t(job_id, waits, type, priority, payload, idempotency_key, scheduled_at, max_attempts,
            timeout_seconds, traceparent, callback_url, concurrency_key, unique_key, schedule_name)
ORDER BY t.job_id
ON CONFLICT DO NOTHING
RETURNING *
