-- notify_jobs_scheduled: tell the scheduler (LISTEN jobs_scheduled) that a PENDING job may now be due
-- sooner than the time it sleeps until. Delivered at commit.
SELECT pg_notify('jobs_scheduled', '')
