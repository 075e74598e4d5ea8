-- set_leader_session_keepalives: if the leader's host vanishes without closing its connection (power
-- loss, a network partition), no FIN or RST reaches the server, which would keep the advisory lock until
-- the OS keepalive default (hours). Probing this session's TCP connection every few seconds frees the
-- lock about :idle_seconds + :interval_seconds * :count after the host is gone. No effect over a Unix
-- socket, where a dead peer is noticed at once.
SELECT set_config('tcp_keepalives_idle', CAST(:idle_seconds AS text), false),
       set_config('tcp_keepalives_interval', CAST(:interval_seconds AS text), false),
       set_config('tcp_keepalives_count', CAST(:count AS text), false)
