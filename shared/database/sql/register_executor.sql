-- register_executor: an executor's record, written at its start and refreshed by its heartbeats: it is
-- listed (ListExecutors) until expires_at, one lease period after it was last seen. The records of
-- executors that died (expired, never deleted by a clean stop) are deleted on the way. liveness_seconds
-- (NULL: none) is how long it may fall silent once its liveness lock is gone before rescue_lost_jobs
-- takes its jobs back.
WITH dead AS (
    DELETE FROM executors
    WHERE expires_at < now() AND executor_id <> :executor_id
)
INSERT INTO executors AS e (executor_id, host, pid, version, types, concurrency, running, started_at,
                            last_seen_at, expires_at, liveness_seconds)
VALUES (:executor_id, :host, :pid, :version, CAST(:types AS text[]), :concurrency, :running, :started_at,
        now(), now() + make_interval(secs => :lease_seconds), CAST(:liveness_seconds AS double precision))
ON CONFLICT (executor_id) DO UPDATE
SET running = EXCLUDED.running,
    last_seen_at = EXCLUDED.last_seen_at,
    expires_at = EXCLUDED.expires_at
