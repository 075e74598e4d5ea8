-- compact_job_counts: fold up to :limit delta rows of job_counts into one row per (type, status), in one
-- statement. Safe while the triggers append: rows inserted after this statement's snapshot are neither
-- deleted nor summed. Safe against a second compactor: a row it already deleted is skipped here.
-- Returns how many delta rows were folded and how many summary rows replaced them.
WITH gone AS (
    DELETE FROM job_counts
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM job_counts LIMIT :limit))
    RETURNING type, status, jobs, attempts
),
kept AS (
    INSERT INTO job_counts (type, status, jobs, attempts)
    SELECT type, status, sum(jobs), sum(attempts)
    FROM gone
    GROUP BY type, status
    HAVING sum(jobs) <> 0 OR sum(attempts) <> 0
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS folded, (SELECT count(*) FROM kept) AS written
