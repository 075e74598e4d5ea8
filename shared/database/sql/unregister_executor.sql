-- unregister_executor: an executor that stops cleanly leaves the list at once.
DELETE FROM executors
WHERE executor_id = :executor_id
