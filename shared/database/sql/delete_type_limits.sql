-- delete_type_limits: remove a type's limits (DeleteTypeLimits); its jobs go back to lease_jobs. Waits
-- for a lease of the type in progress (it holds the row), so no lease straddles the change.
DELETE FROM job_type_limits
WHERE type = :type
RETURNING type
