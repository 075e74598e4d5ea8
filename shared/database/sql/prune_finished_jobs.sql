-- prune_finished_jobs: delete at most :limit jobs in one finished status whose finished_at is older than
-- :older_than_seconds, oldest first (a range scan of jobs_finished_idx), and their attempts. One small
-- batch per statement and transaction, so retention never holds locks or a snapshot for long. SKIP
-- LOCKED: a job being retried right now is left alone.
WITH doomed AS (
    SELECT job_id
    FROM jobs
    WHERE status = CAST(:status AS job_status)
      AND finished_at < now() - make_interval(secs => CAST(:older_than_seconds AS double precision))
    ORDER BY finished_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
),
pruned AS (
    DELETE FROM jobs
    USING doomed
    WHERE jobs.job_id = doomed.job_id
    RETURNING jobs.job_id
),
attempts AS (
    -- ANY(ARRAY(...)): primary-key range lookups, never a hash join over the whole table.
    DELETE FROM job_attempts WHERE job_id = ANY(ARRAY(SELECT job_id FROM pruned))
)
SELECT count(*) AS pruned FROM pruned
