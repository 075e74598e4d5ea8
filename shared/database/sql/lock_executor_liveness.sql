-- lock_executor_liveness: on the executor's LISTEN session, a session-level advisory lock keyed by its
-- executor id. PostgreSQL drops it the moment that session ends, so when an executor dies (SIGKILL, OOM)
-- its lock is gone within milliseconds; rescue_lost_jobs reads pg_locks for it under the same key.
-- false: another session holds the key (an earlier session of this executor that the server has not yet
-- seen end, or another id with the same 64-bit hash).
SELECT pg_try_advisory_lock(hashtextextended(:executor_id, 0)) AS acquired
