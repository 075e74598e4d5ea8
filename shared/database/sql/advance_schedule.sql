-- advance_schedule: record the occurrence just submitted and move on to the next one.
UPDATE job_schedules
SET next_run_at = :next_run_at,
    last_run_at = :last_run_at,
    last_job_id = :last_job_id
WHERE schedule_id = :schedule_id
