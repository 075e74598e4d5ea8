-- listen_jobs_ready: executors wake within milliseconds of a job becoming READY (notify_jobs_ready).
LISTEN jobs_ready
