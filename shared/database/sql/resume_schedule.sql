-- resume_schedule: the schedule is due again from its next_run_at, which stayed where the pause left
-- it: occurrences missed while paused fire once, for the latest of them (submit_due_occurrence's
-- missed-run rule). No row: no such schedule.
UPDATE job_schedules
SET paused_at = NULL
WHERE name = :name
RETURNING *
