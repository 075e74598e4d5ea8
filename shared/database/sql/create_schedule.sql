-- create_schedule: a new schedule, or no row when the name is taken (the caller says ALREADY_EXISTS).
INSERT INTO job_schedules (name, cron, time_zone, job_template, next_run_at)
VALUES (:name, :cron, :time_zone, CAST(:job_template AS jsonb), :next_run_at)
ON CONFLICT (name) DO NOTHING
RETURNING *
