-- list_executors: the live executors (seen within their lease period), oldest first.
SELECT executor_id, host, pid, version, types, concurrency, running, started_at, last_seen_at
FROM executors
WHERE expires_at > now()
ORDER BY started_at, executor_id
LIMIT :limit
