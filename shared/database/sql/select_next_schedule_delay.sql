-- select_next_schedule_delay: seconds until the earliest schedule that is not paused is due (negative
-- when overdue, NULL when there is none). min() reads job_schedules_next_run_at_idx from its start,
-- passing over paused schedules (few: operators pause them by hand); the database's clock decides, as
-- for select_next_due_delay.
SELECT CAST(EXTRACT(EPOCH FROM min(next_run_at) - clock_timestamp()) AS double precision) AS seconds
FROM job_schedules
WHERE paused_at IS NULL
