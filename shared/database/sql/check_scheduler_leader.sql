-- check_scheduler_leader: does this session still hold the scheduler's advisory lock? A bigint key is
-- shown in pg_locks as its high and low 32 bits (classid, objid) with objsubid 1.
SELECT EXISTS (
    SELECT 1
    FROM pg_locks
    WHERE locktype = 'advisory'
      AND pid = pg_backend_pid()
      AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = CAST(CAST(:key AS bigint) >> 32 AS oid)
      AND objid = CAST(CAST(:key AS bigint) & 4294967295 AS oid)
      AND objsubid = 1
) AS held
