"""The scheduler process: one active instance (PostgreSQL advisory lock) runs the maintenance duties.

- ``leader``: who is active, and starting/stopping the duties as leadership comes and goes.
- ``promoter``, ``rescuer``, ``pruner``, ``compactor``, ``periodic``: the duties promote_due_jobs,
  rescue_lost_jobs, prune_finished_jobs, compact_job_counts and submit_scheduled_occurrences, each
  a shared.runtime Duty (one bounded pass, then wait) run as an asyncio task while this process leads.
- ``settings``: the frozen settings and their environment variables; ``metrics``: what Prometheus sees.

The statements they run are operations of the database gateway (shared.database.Database).
"""
