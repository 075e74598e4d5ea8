-- try_lock_scheduler_leader: become the active scheduler unless another session is. A session-level
-- advisory lock: PostgreSQL releases it when the holding connection closes, so a scheduler that dies
-- hands over leadership without anyone cleaning up.
SELECT pg_try_advisory_lock(CAST(:key AS bigint)) AS acquired
