-- select_active_jobs_by_unique_keys: the unfinished jobs holding these unique keys (at most one each,
-- by jobs_unique_key_active_uq, whose predicate this repeats so the planner uses it).
SELECT * FROM jobs
WHERE unique_key = ANY(CAST(:keys AS text[]))
  AND status IN ('WAITING', 'PENDING', 'READY', 'PROCESSING')
