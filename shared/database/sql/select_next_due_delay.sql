-- select_next_due_delay: seconds until the earliest PENDING job is due (negative when overdue, NULL when
-- there is none). min() over jobs_pending_idx reads one index entry. The database's clock decides, so a
-- scheduler on a host whose clock drifts still wakes on time.
SELECT CAST(EXTRACT(EPOCH FROM min(run_at) - clock_timestamp()) AS double precision) AS seconds
FROM jobs
WHERE status = 'PENDING'
