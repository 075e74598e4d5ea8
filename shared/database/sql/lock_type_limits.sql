-- lock_type_limits: the first statement of lease_limited_jobs' transaction. Locking the type's limits
-- row serializes the leasing of that one type across all executors (unlimited types never touch it).
-- It is a statement of its own on purpose: under READ COMMITTED the next statement takes a fresh
-- snapshot, which sees every lease the previous holder of the lock committed. Counting in the same
-- statement that waited for the lock would count from a snapshot older than the wait, and over-lease.
SELECT type
FROM job_type_limits
WHERE type = :type
FOR UPDATE
