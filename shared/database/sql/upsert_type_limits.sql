-- upsert_type_limits: create or replace every limit of one type (SetTypeLimits). The start times in
-- the window are kept: lowering rate_limit takes effect at once, counting the starts already made.
INSERT INTO job_type_limits AS l (type, max_running, max_running_per_key, rate_limit, rate_period_seconds)
VALUES (:type, :max_running, :max_running_per_key, :rate_limit, :rate_period_seconds)
ON CONFLICT (type) DO UPDATE
SET max_running = EXCLUDED.max_running,
    max_running_per_key = EXCLUDED.max_running_per_key,
    rate_limit = EXCLUDED.rate_limit,
    rate_period_seconds = EXCLUDED.rate_period_seconds,
    updated_at = now()
RETURNING l.type, l.max_running, l.max_running_per_key, l.rate_limit, l.rate_period_seconds, l.updated_at
