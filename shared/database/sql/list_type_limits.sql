-- list_type_limits: every type's limits (ListTypeLimits), by type. One row per limited type: small.
SELECT type, max_running, max_running_per_key, rate_limit, rate_period_seconds, updated_at
FROM job_type_limits
ORDER BY type
