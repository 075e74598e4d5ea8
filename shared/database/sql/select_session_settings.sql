-- select_session_settings: what a process's connections really got, reported once at start: behind a
-- connection pooler the start-up options (timezone, statement_timeout) are not sent, so the role's or
-- the database's settings must supply them; the address tells which host of a multi-host URL answered.
SELECT current_setting('server_version') AS server_version,
       host(inet_server_addr()) AS server_address,
       inet_server_port() AS server_port,
       pg_is_in_recovery() AS in_recovery,
       current_setting('TimeZone') AS timezone,
       current_setting('statement_timeout') AS statement_timeout,
       (SELECT CAST(setting AS integer) FROM pg_settings WHERE name = 'statement_timeout') AS statement_timeout_ms
