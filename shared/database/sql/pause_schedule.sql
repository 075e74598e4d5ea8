-- pause_schedule: the schedule submits nothing until resumed (lock_due_schedule skips it). Pausing a
-- paused schedule keeps its paused_at. No row: no such schedule.
UPDATE job_schedules
SET paused_at = COALESCE(paused_at, now())
WHERE name = :name
RETURNING *
