-- listen_jobs_scheduled: the scheduler hears about PENDING jobs that may be due sooner than the time it
-- sleeps until (see notify_jobs_scheduled). Only on a connection in autocommit mode: notifications are
-- delivered between transactions.
LISTEN jobs_scheduled
