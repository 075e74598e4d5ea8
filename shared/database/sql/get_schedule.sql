-- get_schedule: one schedule by name.
SELECT * FROM job_schedules WHERE name = :name
