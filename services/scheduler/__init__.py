"""The scheduler process: one active instance (PostgreSQL advisory lock) runs the maintenance duties.

- ``leader``: who is active, and starting/stopping the duties as leadership comes and goes.
- ``loops``: the one loop shape every duty runs in (stop signal, bounded pass, back-off on outages).
- ``promoter``, ``rescuer``, ``pruner``, ``compactor``: the duties promote_due_jobs,
  rescue_expired_leases, prune_finished_jobs and compact_job_counts.
- ``settings``: the frozen settings and their environment variables; ``metrics``: what Prometheus sees.

The SQL they run lives in ``shared.database.maintenance``.
"""
