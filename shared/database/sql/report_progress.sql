-- report_progress: store the latest progress of running attempts, one statement for many jobs, each
-- only while its lease token still matches (a stale attempt cannot overwrite a newer one's progress).
UPDATE jobs AS j
SET progress_percent = p.percent,
    progress_message = p.message,
    progress_at = now(),
    updated_at = now()
FROM unnest(
        CAST(:job_ids AS bigint[]),
        CAST(:lease_tokens AS uuid[]),
        CAST(:percents AS smallint[]),
        CAST(:messages AS text[])
     ) AS p(job_id, lease_token, percent, message)
WHERE j.job_id = p.job_id
  AND j.lease_token = p.lease_token
  AND j.status = 'PROCESSING'
