-- notify_jobs_ready: wake executors (LISTEN jobs_ready). Sent once per transaction that made
-- jobs READY; PostgreSQL delivers it at commit, and drops it on rollback.
SELECT pg_notify('jobs_ready', '')
