-- select_limited_types: which of the given job types have limits (executors cache this for ~1 s;
-- lease_jobs refuses those types anyway, so a stale answer only delays their jobs).
SELECT type
FROM job_type_limits
WHERE type = ANY(CAST(:types AS text[]))
