-- complete_jobs: write a batch of attempt outcomes in one statement. Each row is written only while
-- the job is still PROCESSING under the same lease token, so an executor that lost its lease can
-- never overwrite a newer attempt; the rows not returned are the stale outcomes.
-- A retry (PENDING) of a job whose cancel was requested meanwhile ends CANCELLED instead; SET reads
-- cancel_requested from the row version this statement locked, so a cancel that lands while the
-- statement waits for the row is seen.
-- No separate SELECT ... FOR UPDATE pass to lock rows in id order: it costs a WAL record per row, and
-- the rows of one executor's batches are its own leases (its writers take turns), so two statements
-- contend only for a job rescued and re-leased meanwhile; should that ever deadlock, PostgreSQL
-- aborts one statement and the executor retries it.
-- Each written outcome also appends its attempt to job_attempts, in this statement (no round trip of
-- its own): started_at is the lease's (this UPDATE leaves it alone), the executor is :executor_id, and
-- the attempt number follows the job's last recorded one (one probe of job_attempts' primary key).
WITH written AS (
    UPDATE jobs AS j
    SET status = CASE WHEN o.status = 'PENDING' AND j.cancel_requested THEN 'CANCELLED'::job_status
                      ELSE o.status END,
        result = CASE WHEN o.status = 'COMPLETED' THEN CAST(o.result AS jsonb) END,
        error_message = CASE WHEN o.status = 'PENDING' AND j.cancel_requested THEN 'cancelled by request'
                             ELSE o.error_message END,
        run_at = CASE WHEN o.status = 'PENDING' AND NOT j.cancel_requested
                      THEN now() + make_interval(secs => o.retry_delay)
                      ELSE j.run_at END,
        finished_at = CASE WHEN o.status = 'PENDING' AND NOT j.cancel_requested THEN NULL ELSE now() END,
        lease_owner = NULL,
        lease_token = NULL,
        lease_expires_at = NULL,
        updated_at = now()
    FROM unnest(
            CAST(:job_ids AS bigint[]),
            CAST(:lease_tokens AS uuid[]),
            CAST(:statuses AS job_status[]),
            CAST(:results AS text[]),
            CAST(:error_messages AS text[]),
            CAST(:retry_delays AS double precision[]),
            CAST(:attempt_outcomes AS job_attempt_outcome[]),
            CAST(:error_types AS text[]),
            CAST(:tracebacks AS text[])
         ) AS o(job_id, lease_token, status, result, error_message, retry_delay, attempt_outcome, error_type,
                traceback)
    WHERE j.job_id = o.job_id
      AND j.lease_token = o.lease_token
      AND j.status = 'PROCESSING'
    RETURNING j.job_id, j.status, j.started_at, o.attempt_outcome, o.error_type, o.error_message, o.traceback
),
recorded AS (
    INSERT INTO job_attempts (job_id, attempt, executor_id, started_at, finished_at, outcome, error_type,
                              error_message, traceback)
    SELECT w.job_id,
           COALESCE((SELECT max(a.attempt) FROM job_attempts AS a WHERE a.job_id = w.job_id), 0) + 1,
           :executor_id, w.started_at, now(), w.attempt_outcome, w.error_type, w.error_message, w.traceback
    FROM written AS w
)
SELECT job_id, status FROM written
