-- list_job_types: every job type that has jobs, limits or a pause, ordered by type, the page after
-- :after (and only :type when given), with its counts by status (from the job_counts deltas, as
-- count_jobs), its limits and its pause.
WITH counts AS (
    SELECT type, CAST(status AS text) AS status, sum(jobs) AS jobs
    FROM job_counts
    WHERE type > :after AND (CAST(:type AS text) IS NULL OR type = :type)
    GROUP BY type, status
    HAVING sum(jobs) <> 0
),
names AS (
    SELECT type FROM counts
    UNION
    SELECT type FROM job_type_limits WHERE type > :after AND (CAST(:type AS text) IS NULL OR type = :type)
    UNION
    SELECT type FROM job_type_pauses WHERE type > :after AND (CAST(:type AS text) IS NULL OR type = :type)
),
page AS (
    SELECT type FROM names ORDER BY type LIMIT :limit
)
SELECT page.type,
       (SELECT jsonb_object_agg(counts.status, counts.jobs) FROM counts WHERE counts.type = page.type) AS counts,
       l.type IS NOT NULL AS limited,
       l.max_running,
       l.max_running_per_key,
       l.rate_limit,
       l.rate_period_seconds,
       l.updated_at AS limits_updated_at,
       p.paused_at
FROM page
LEFT JOIN job_type_limits AS l ON l.type = page.type
LEFT JOIN job_type_pauses AS p ON p.type = page.type
ORDER BY page.type
