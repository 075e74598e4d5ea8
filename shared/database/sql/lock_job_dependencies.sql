-- lock_job_dependencies: lock the jobs a submit depends on, in id order (two submits never deadlock
-- on each other), mark them as having dependents, and return their status as of the lock. A job that
-- finishes concurrently either finished before this lock (the submit sees its final status and adds
-- no edge) or waits for the submit to commit (its release_job_dependents trigger then sees the edge).
-- Ids that do not come back do not exist.
UPDATE jobs
SET has_dependents = true
WHERE job_id IN (
    SELECT job_id FROM jobs WHERE job_id = ANY(CAST(:job_ids AS bigint[])) ORDER BY job_id FOR UPDATE
)
RETURNING job_id, status, error_message
