-- resume_job_type: leasing of the type may start again; the caller notifies jobs_ready in the same
-- transaction when a pause was removed, so executors lease its READY jobs at once.
DELETE FROM job_type_pauses
WHERE type = :type
