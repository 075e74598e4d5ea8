-- submit_jobs_with_unique_keys: submit_jobs (keep the two in step) for a batch in which some job has a
-- unique_key. A job whose idempotency key is taken, or whose unique_key an unfinished job holds, is
-- skipped here: ON CONFLICT DO NOTHING without a target covers both unique indexes (and waits for a
-- concurrent insert of the same key to commit). The caller then reads the job holding the key with
-- select_active_jobs_by_unique_keys. Not the statement for every batch: without a target, PostgreSQL
-- also probes the primary key of every row before inserting it, about 2 us per job (measured).
-- The same statement wakes executors (jobs_ready) and the scheduler (jobs_scheduled), once each at
-- most, when it made READY or PENDING jobs: one round trip instead of three. PostgreSQL delivers the
-- notifications at commit, and drops them on rollback.
WITH inserted AS (
INSERT INTO jobs (type, status, priority, payload, idempotency_key, scheduled_at, run_at,
                  max_attempts, timeout_seconds, traceparent, callback_url, concurrency_key,
                  unique_key, schedule_name, fairness_key)
SELECT t.type,
       CASE WHEN t.scheduled_at > now() THEN 'PENDING' ELSE 'READY' END::job_status,
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
-- One JSON array of the jobs (NewJob's fields by name), encoded by the api in C: adapting twelve
-- arrays of parameters cost the api more per job than everything else the insert needs from it.
FROM ROWS FROM (json_to_recordset(CAST(:jobs AS json))
                AS (type text, priority smallint, payload jsonb, idempotency_key text, scheduled_at timestamptz,
              max_attempts integer, timeout_seconds integer, traceparent text, callback_url text,
              concurrency_key text, unique_key text, schedule_name text, fairness_key text))
     WITH ORDINALITY
     AS t(type, priority, payload, idempotency_key, scheduled_at, max_attempts, timeout_seconds,
          traceparent, callback_url, concurrency_key, unique_key, schedule_name, fairness_key, ordinal)
ORDER BY t.ordinal
ON CONFLICT DO NOTHING
-- Only what the database decides: the caller knows the rest of a new job (Job.inserted). Returning
-- every column cost the api more per job than building the answer.
RETURNING job_id, status, idempotency_key, unique_key, created_at, run_at
),
woken AS (SELECT pg_notify('jobs_ready', '') FROM inserted WHERE status = 'READY' LIMIT 1),
scheduled AS (SELECT pg_notify('jobs_scheduled', '') FROM inserted WHERE status = 'PENDING' LIMIT 1)
-- The scalar subqueries make PostgreSQL evaluate both notifying CTEs; the condition is always true.
SELECT inserted.* FROM inserted
WHERE (SELECT count(*) FROM woken) + (SELECT count(*) FROM scheduled) >= 0
