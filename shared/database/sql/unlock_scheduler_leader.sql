-- unlock_scheduler_leader: step down, so a standby takes over without waiting for this connection to close.
SELECT pg_advisory_unlock(CAST(:key AS bigint)) AS released
