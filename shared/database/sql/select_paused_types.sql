-- select_paused_types: every paused job type (the scheduler's job_type_paused gauge). Paused types
-- are few: operators pause them by hand.
SELECT type
FROM job_type_pauses
