-- record_schedule_run: a run submitted outside the cron (TriggerSchedule) becomes the schedule's last
-- run; next_run_at is left alone.
UPDATE job_schedules
SET last_run_at = :last_run_at,
    last_job_id = :last_job_id
WHERE schedule_id = :schedule_id
