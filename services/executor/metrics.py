"""The executor's Prometheus metrics, served on METRICS_PORT (0 turns the endpoint off).

Names share the verb of the loop that moves them (lease_jobs -> leases_taken_total, complete_jobs ->
jobs_completed_total, heartbeat_leases -> heartbeats_total...). The database gateway's metrics
(database_up, database_errors_total) and the loops' (loop_*) are the same in every process:
shared/database/metrics.py, shared/runtime/metrics.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from shared.telemetry import JOB_TYPE_LABEL

__all__ = [
    "ABANDONED_THREADS",
    "HEARTBEATS",
    "JOBS_CANCELLED",
    "JOBS_COMPLETED",
    "JOBS_FAILED",
    "JOBS_RETRIED",
    "JOBS_RUNNING",
    "JOB_DURATION",
    "JOB_QUEUE_WAIT",
    "LEASES_LOST",
    "LEASES_RELEASED",
    "LEASES_TAKEN",
    "LEASE_BATCHES",
    "LEASE_LIMIT_HOLDS",
    "OUTCOMES_PENDING",
    "STALE_OUTCOMES",
    "WORKER_UP",
    "WORKER_UP_BY_TYPE",
    "serve_metrics",
    "set_worker_up",
]

# Job durations range from microseconds (echo) to hours (reports).
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600, float("inf"))

JOBS_COMPLETED = Counter("jobs_completed_total", "Jobs that ended COMPLETED here", ["job_type"])
JOBS_FAILED = Counter(
    "jobs_failed_total", "Jobs that ended FAILED here (attempts used up or non-retryable)", ["job_type"]
)
JOBS_RETRIED = Counter("jobs_retried_total", "Failed attempts sent back to PENDING for a retry", ["job_type"])
JOBS_CANCELLED = Counter("jobs_cancelled_total", "Running jobs that ended CANCELLED here", ["job_type"])
JOB_DURATION = Histogram(
    "job_duration_seconds", "How long attempts ran, by job type", ["job_type"], buckets=_DURATION_BUCKETS
)
JOB_QUEUE_WAIT = Histogram(
    "job_queue_wait_seconds", "From due (run_at) to leased (started_at)", ["job_type"], buckets=_DURATION_BUCKETS
)
WORKER_UP = Gauge("worker_up", "1 while this executor runs and leases jobs")
# worker_up per job type this executor runs, so an alert can tell a type that no executor serves. The types
# are the operator's (EXECUTOR_TYPES, or every registered handler), never a client's.
WORKER_UP_BY_TYPE = Gauge(
    "worker_up_by_type", "1 for each job type this executor leases while it leases (0 while it drains)", ["job_type"]
)
JOBS_RUNNING = Gauge("jobs_running", "Attempts running in this executor right now")
OUTCOMES_PENDING = Gauge("outcomes_pending", "Outcomes waiting to be written (many during a database outage)")
ABANDONED_THREADS = Gauge(
    "abandoned_threads", "Sync handlers still running in a thread after their timeout or cancel freed the slot"
)
LEASES_TAKEN = Counter("leases_taken_total", "Jobs leased")
LEASE_BATCHES = Counter("lease_batches_total", "lease_jobs statements that leased at least one job")
LEASE_LIMIT_HOLDS = Counter(
    "lease_limit_holds_total",
    "Lease rounds of a type with limits that left READY jobs waiting because of a limit, by type and limit "
    "(max_running, max_running_per_key, rate_limit, or paused: the type is paused)",
    ["job_type", "limit"],
)
LEASES_LOST = Counter("leases_lost_total", "Running jobs whose lease another party took over (result discarded)")
LEASES_RELEASED = Counter("leases_released_total", "Unfinished jobs handed back at shutdown")
STALE_OUTCOMES = Counter("stale_outcomes_total", "Outcomes dropped because the lease token no longer matched")
HEARTBEATS = Counter("heartbeats_total", "heartbeat_leases statements run")


def set_worker_up(up: bool, job_types: Sequence[str]) -> None:
    """worker_up, and worker_up_by_type of each type this executor runs."""
    WORKER_UP.set(int(up))
    for job_type in job_types:
        WORKER_UP_BY_TYPE.labels(JOB_TYPE_LABEL(job_type)).set(int(up))


def serve_metrics(port: int, host: str) -> None:
    """Serve /metrics on ``host``:``port`` in a background thread (nothing when the port is 0)."""
    if port:
        start_http_server(port, addr=host)
