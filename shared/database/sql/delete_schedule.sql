-- delete_schedule: remove a schedule; the jobs it already submitted stay. Waits for a scheduler that
-- is submitting an occurrence of it (row lock), so no occurrence starts after the delete returned.
DELETE FROM job_schedules WHERE name = :name RETURNING schedule_id
