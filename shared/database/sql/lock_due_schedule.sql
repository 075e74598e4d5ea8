-- lock_due_schedule: the earliest due schedule that is not paused and that no other scheduler is
-- working on, locked until the transaction that submits its occurrence and advances it commits; with
-- the transaction's now().
SELECT job_schedules.*, now() AS database_now
FROM job_schedules
WHERE next_run_at <= now() AND paused_at IS NULL
ORDER BY next_run_at
LIMIT 1
FOR UPDATE SKIP LOCKED
