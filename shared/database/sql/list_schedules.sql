-- list_schedules: a page of schedules by name, after :after (ListSchedules).
SELECT * FROM job_schedules WHERE name > :after ORDER BY name LIMIT :limit
