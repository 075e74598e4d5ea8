"""The scheduler's Prometheus metrics, each named after the duty that moves it.

scheduler_is_leader                         1 while this process is the active scheduler
scheduler_leadership_acquired_total         times this process became the active scheduler
jobs_promoted_total                         PENDING jobs made READY (promote_due_jobs)
jobs_promotion_lateness_seconds             how long after its run_at each job became READY
jobs_rescued_total{status}                  expired leases taken back, by where the job went
jobs_pruned_total{status}                   finished jobs deleted by retention
job_counts_compacted_total                  job_counts delta rows folded together
schedule_occurrences_submitted_total{schedule}  occurrences of a periodic schedule submitted as jobs
schedule_occurrence_lateness_seconds        how long after its occurrence time each one was submitted
jobs_by_status{status}                      jobs per status, from the job_counts aggregate (leader only)
jobs_pending_count, jobs_ready_count,       the seed's names for jobs_by_status of PENDING, READY and
jobs_processing_count                       PROCESSING; exported by the active scheduler only
scheduler_loop_duration_seconds{loop}       time of one pass of each duty
database_errors_total{operation}            database unavailable (a duty, the leader lock, the listener)
scheduler_loop_errors_total{loop}           unexpected errors in a duty (a bug: see the log)
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.jobs import JobStatus

__all__ = [
    "DATABASE_ERRORS",
    "IS_LEADER",
    "JOBS_BY_STATUS",
    "JOBS_PROMOTED",
    "JOBS_PRUNED",
    "JOBS_RESCUED",
    "JOB_COUNTS_COMPACTED",
    "LEADERSHIP_ACQUIRED",
    "LOOP_DURATION",
    "LOOP_ERRORS",
    "PROMOTION_LATENESS",
    "QUEUE_DEPTH_GAUGES",
    "SCHEDULE_LATENESS",
    "SCHEDULE_OCCURRENCES",
    "QueueDepth",
    "start_metrics_server",
]

IS_LEADER = Gauge("scheduler_is_leader", "1 while this process is the active scheduler, else 0")
LEADERSHIP_ACQUIRED = Counter("scheduler_leadership_acquired", "Times this process became the active scheduler")
JOBS_PROMOTED = Counter("jobs_promoted", "PENDING jobs made READY because their run_at came")
PROMOTION_LATENESS = Histogram(
    "jobs_promotion_lateness_seconds",
    "How long after its run_at each promoted job became READY",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0),
)
JOBS_RESCUED = Counter("jobs_rescued", "PROCESSING jobs whose lease expired, by the status they went to", ["status"])
JOBS_PRUNED = Counter("jobs_pruned", "Finished jobs deleted by retention, by status", ["status"])
JOB_COUNTS_COMPACTED = Counter("job_counts_compacted", "job_counts delta rows folded into per-status rows")
# Labelled by schedule name: schedules are few, written by people (like job types).
SCHEDULE_OCCURRENCES = Counter(
    "schedule_occurrences_submitted",
    "Occurrences of a periodic schedule submitted as jobs (submit_scheduled_occurrences)",
    ["schedule"],
)
SCHEDULE_LATENESS = Histogram(
    "schedule_occurrence_lateness_seconds",
    "How long after its occurrence time each schedule occurrence was submitted",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 3600.0, 86400.0),
)
JOBS_BY_STATUS = Gauge("jobs_by_status", "Jobs per status, from the job_counts aggregate", ["status"])
LOOP_DURATION = Histogram(
    "scheduler_loop_duration_seconds",
    "Time taken by one pass of a scheduler duty",
    ["loop"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DATABASE_ERRORS = Counter(
    "database_errors", "Times the database was unavailable, by what was being done", ["operation"]
)
LOOP_ERRORS = Counter("scheduler_loop_errors", "Unexpected errors in a scheduler duty", ["loop"])

# The seed's queue-depth gauges: name -> (status, help).
QUEUE_DEPTH_GAUGES = {
    "jobs_pending_count": (JobStatus.PENDING, "Jobs waiting for their run_at (scheduled, or backing off to retry)"),
    "jobs_ready_count": (JobStatus.READY, "Jobs due and waiting for an executor"),
    "jobs_processing_count": (JobStatus.PROCESSING, "Jobs leased by an executor"),
}


class QueueDepth(Collector):
    """jobs_pending_count, jobs_ready_count and jobs_processing_count, read from the jobs_by_status gauges.

    Those are refreshed by the active scheduler's compact_job_counts pass (every few seconds, from the
    job_counts aggregate), so a scrape costs no query at all. A standby exports nothing: its last
    values, from when it led, would be stale.
    """

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(name, text) for name, (_, text) in QUEUE_DEPTH_GAUGES.items()]

    def collect(self) -> Iterable[Metric]:
        if not any(sample.value for metric in IS_LEADER.collect() for sample in metric.samples):
            return
        by_status = {
            sample.labels["status"]: sample.value for metric in JOBS_BY_STATUS.collect() for sample in metric.samples
        }
        for name, (status, text) in QUEUE_DEPTH_GAUGES.items():
            if status.value in by_status:
                yield GaugeMetricFamily(name, text, value=by_status[status.value])


REGISTRY.register(QueueDepth())


def start_metrics_server(port: int) -> None:
    """Serve /metrics on ``port`` (all interfaces) from a background thread."""
    start_http_server(port)
