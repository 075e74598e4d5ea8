-- update_schedule: replace a schedule's cron, time zone and job template; next_run_at moves only when
-- given (the cron or the time zone changed). No row: no such schedule.
UPDATE job_schedules
SET cron = :cron,
    time_zone = :time_zone,
    job_template = CAST(:job_template AS jsonb),
    next_run_at = COALESCE(:next_run_at, next_run_at)
WHERE name = :name
RETURNING *
