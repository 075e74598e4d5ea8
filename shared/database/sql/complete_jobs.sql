-- complete_jobs: write a batch of attempt outcomes in one statement. Each row is written only while
-- the job is still PROCESSING under the same lease token, so an executor that lost its lease can
-- never overwrite a newer attempt; the rows not returned are the stale outcomes.
-- A retry (PENDING) of a job whose cancel was requested meanwhile ends CANCELLED instead.
WITH outcome AS (
    SELECT *
    FROM unnest(
            CAST(:job_ids AS bigint[]),
            CAST(:lease_tokens AS uuid[]),
            CAST(:statuses AS job_status[]),
            CAST(:results AS text[]),
            CAST(:error_messages AS text[]),
            CAST(:retry_delays AS double precision[])
         ) AS o(job_id, lease_token, status, result, error_message, retry_delay)
), decided AS (
    SELECT o.*,
           CASE WHEN o.status = 'PENDING' AND j.cancel_requested THEN 'CANCELLED'::job_status
                ELSE o.status END AS new_status
    FROM outcome AS o
    JOIN jobs AS j ON j.job_id = o.job_id
    WHERE j.status = 'PROCESSING'
      AND j.lease_token = o.lease_token
    -- Lock in id order, so two writers of overlapping batches cannot deadlock.
    ORDER BY o.job_id
    FOR UPDATE OF j
)
UPDATE jobs AS j
SET status = d.new_status,
    result = CASE WHEN d.new_status = 'COMPLETED' THEN CAST(d.result AS jsonb) END,
    error_message = CASE WHEN d.new_status <> d.status THEN 'cancelled by request' ELSE d.error_message END,
    run_at = CASE WHEN d.new_status = 'PENDING' THEN now() + make_interval(secs => d.retry_delay)
                  ELSE j.run_at END,
    finished_at = CASE WHEN d.new_status = 'PENDING' THEN NULL ELSE now() END,
    lease_owner = NULL,
    lease_token = NULL,
    lease_expires_at = NULL,
    updated_at = now()
FROM decided AS d
WHERE j.job_id = d.job_id
RETURNING j.job_id, j.status
