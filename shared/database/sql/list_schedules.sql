-- list_schedules: every schedule, by name (schedules are few: operators write them by hand).
SELECT * FROM job_schedules ORDER BY name LIMIT :limit
