-- rescue_lost_jobs: PROCESSING jobs whose attempt is lost, at most :limit per statement. Two ways to know:
-- 1. its lease expired: the executor stopped heartbeating (it died, hung, or lost the database);
-- 2. its executor died, which shows within seconds: the liveness lock it held on its own session
--    (lock_executor_liveness) is gone, because PostgreSQL ends a session the moment its process dies,
--    AND it has not been seen (register_executor, every heartbeat tick while it holds leases) for its
--    liveness_seconds. A live executor whose session merely dropped (pg_terminate_backend, a network
--    blip) keeps being seen through its pool, so a missing lock alone never takes its jobs. The silence
--    must also lie wholly within what this scheduler saw without a break: after a database restart, a
--    failover or a network break, every executor fell silent at once for as long as it lasted, and
--    their locks went with their sessions; only an executor seen again afterwards, then silent, is
--    dead. A break shows two ways: this connection began after it (backend_start), or the process
--    found the database unavailable since (:unbroken_seconds ago; a pooler in session mode may hand a
--    reconnecting client an older server session). A job leased within liveness_seconds is left alone
--    too (an idle executor's record is refreshed only every heartbeat interval).
-- The attempt counts: attempts went up when the job was leased; the gateway records it LOST
-- (record_lost_attempts) in the same transaction, with the executor that held the lease and when the
-- attempt started, returned here, and why by reason. A job whose cancel was requested ends
-- CANCELLED; one with no attempts left ends FAILED; any other goes back to READY at once. SKIP LOCKED: a
-- row locked right now is being heartbeated or completed by its executor, which is then alive after
-- all. Both conditions are checked again, and the outcome computed in SET, on the row version this
-- statement locked, not on its snapshot (a cancel, a heartbeat or a completion may have landed since).
WITH dead AS (
    SELECT e.executor_id, e.liveness_seconds
    FROM executors AS e
    WHERE e.liveness_seconds IS NOT NULL
      AND e.last_seen_at < now() - make_interval(secs => e.liveness_seconds)
      AND e.last_seen_at >= greatest(
              (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()),
              now() - make_interval(secs => :unbroken_seconds))
      -- pg_locks shows a bigint key as its high and low 32 bits (classid, objid) with objsubid 1.
      AND NOT EXISTS (
          SELECT 1
          FROM pg_locks AS l
          WHERE l.locktype = 'advisory'
            AND l.granted
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND l.classid = CAST((hashtextextended(e.executor_id, 0) >> 32) & 4294967295 AS oid)
            AND l.objid = CAST(hashtextextended(e.executor_id, 0) & 4294967295 AS oid)
            AND l.objsubid = 1
      )
),
-- Two index reads, each bounded: the oldest expired leases (jobs_processing_idx), and the jobs of dead
-- executors (read only when there is one).
candidates AS (
    (SELECT job_id FROM jobs WHERE status = 'PROCESSING' AND lease_expires_at < now()
     ORDER BY lease_expires_at LIMIT :limit)
    UNION ALL
    (SELECT j.job_id FROM dead AS d JOIN jobs AS j ON j.lease_owner = d.executor_id
     WHERE j.status = 'PROCESSING' LIMIT :limit)
),
lost AS (
    SELECT j.job_id, j.lease_owner, j.started_at, j.lease_expires_at < now() AS expired
    FROM jobs AS j
    WHERE j.job_id = ANY(ARRAY(SELECT job_id FROM candidates))
      AND j.status = 'PROCESSING'
      AND (j.lease_expires_at < now()
           OR EXISTS (SELECT 1 FROM dead AS d
                      WHERE d.executor_id = j.lease_owner
                        AND j.started_at < now() - make_interval(secs => d.liveness_seconds)))
    ORDER BY j.lease_expires_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs
SET status = CAST(CASE
                      WHEN cancel_requested THEN 'CANCELLED'
                      WHEN attempts >= max_attempts THEN 'FAILED'
                      ELSE 'READY'
                  END AS job_status),
    run_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN run_at ELSE now() END,
    finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN now() END,
    error_message = CASE
                        WHEN cancel_requested THEN 'cancelled by request'
                        WHEN lost.expired
                        THEN format('lease expired: executor %s stopped heartbeating (attempt %s of %s)',
                                    coalesce(jobs.lease_owner, 'unknown'), attempts, max_attempts)
                        ELSE format('executor %s died: its database session ended and it stopped heartbeating '
                                    '(attempt %s of %s)', jobs.lease_owner, attempts, max_attempts)
                    END,
    lease_owner = NULL,
    lease_token = NULL,
    lease_expires_at = NULL,
    updated_at = now()
FROM lost
WHERE jobs.job_id = lost.job_id
RETURNING jobs.job_id, jobs.type, jobs.status, jobs.attempts, jobs.max_attempts, jobs.error_message,
          lost.lease_owner, lost.started_at,
          CASE WHEN lost.expired THEN 'lease_expired' ELSE 'executor_died' END AS reason
