"""The scheduler's Prometheus metrics, each named after the duty that moves it.

scheduler_is_leader                         1 while this process is the active scheduler
scheduler_leadership_acquired_total         times this process became the active scheduler
jobs_promoted_total                         PENDING jobs made READY (promote_due_jobs)
jobs_promotion_lateness_seconds             how long after its run_at each job became READY
jobs_rescued_total{status,reason}           lost jobs taken back (rescue_lost_jobs), by where they went and
                                            how the loss was known: lease_expired, executor_died
jobs_pruned_total{status}                   finished jobs deleted by retention
job_counts_compacted_total                  job_counts delta rows folded together
schedule_occurrences_submitted_total{schedule}  occurrences of a periodic schedule submitted as jobs
schedule_occurrence_lateness_seconds        how long after its occurrence time each one was submitted
jobs_by_status{status}                      jobs per status, from the job_counts aggregate (leader only)
jobs_ready_by_type{job_type}                READY jobs per type with any, from the same aggregate (leader only)
job_type_paused{job_type}                   1 per paused job type (PauseJobType), with the counts (leader only)
jobs_pending_count, jobs_ready_count,       the seed's names for jobs_by_status of PENDING, READY and
jobs_processing_count                       PROCESSING; exported by the active scheduler only

The database gateway's metrics (database_up, database_errors_total{operation}) and the loops'
(loop_duration_seconds{loop}, loop_errors_total{loop}, loop_busy_seconds{loop}) are the same in every
process: shared/database/metrics.py, shared/runtime/metrics.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.jobs import JobStatus
from shared.telemetry import JOB_TYPE_LABEL

__all__ = [
    "IS_LEADER",
    "JOBS_BY_STATUS",
    "JOBS_PROMOTED",
    "JOBS_PRUNED",
    "JOBS_READY_BY_TYPE",
    "JOBS_RESCUED",
    "JOB_COUNTS_COMPACTED",
    "JOB_TYPE_PAUSED",
    "LEADERSHIP_ACQUIRED",
    "PROMOTION_LATENESS",
    "QUEUE_DEPTH_GAUGES",
    "SCHEDULE_LATENESS",
    "SCHEDULE_OCCURRENCES",
    "QueueDepth",
    "clear_job_counts",
    "set_job_counts",
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
JOBS_RESCUED = Counter(
    "jobs_rescued",
    "PROCESSING jobs taken back because their lease expired or their executor died, by the status they went to "
    "and the reason (lease_expired, executor_died)",
    ["status", "reason"],
)
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
# Only types that have READY jobs (a type's series goes when its last READY job is leased), so that an alert
# can name a type with work waiting and no executor serving it (worker_up_by_type).
JOBS_READY_BY_TYPE = Gauge("jobs_ready_by_type", "READY jobs per type, from the job_counts aggregate", ["job_type"])
# Only paused types: an alert about READY jobs nobody runs leaves out the types paused on purpose.
JOB_TYPE_PAUSED = Gauge("job_type_paused", "1 for each paused job type (PauseJobType)", ["job_type"])


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


def set_job_counts(by_type: Mapping[tuple[str, JobStatus], int], paused: Iterable[str] = ()) -> None:
    """jobs_by_status (every status) and jobs_ready_by_type (the types with READY jobs) from the
    aggregate; job_type_paused from the ``paused`` types."""
    by_status = dict.fromkeys(JobStatus, 0)
    ready: dict[str, int] = {}
    for (job_type, status), count in by_type.items():
        by_status[status] += count
        if status is JobStatus.READY and count > 0:
            label = JOB_TYPE_LABEL(job_type)
            ready[label] = ready.get(label, 0) + count
    for status, count in by_status.items():
        JOBS_BY_STATUS.labels(status.value).set(count)
    _set_per_type(JOBS_READY_BY_TYPE, ready)
    _set_per_type(JOB_TYPE_PAUSED, dict.fromkeys(paused, 1))


def _set_per_type(gauge: Gauge, values: Mapping[str, int]) -> None:
    """``gauge`` has exactly the series of ``values`` (by job_type): the others are removed."""
    exported = _exported.setdefault(gauge, set())
    for job_type, value in values.items():
        gauge.labels(job_type).set(value)
    for job_type in exported - values.keys():
        gauge.remove(job_type)
    exported.clear()
    exported.update(values)


def clear_job_counts() -> None:
    """A scheduler that steps down exports no counts: its last ones would go stale."""
    JOBS_BY_STATUS.clear()
    for gauge in (JOBS_READY_BY_TYPE, JOB_TYPE_PAUSED):
        gauge.clear()
    _exported.clear()


# The job_type label values each per-type gauge exports now (set_job_counts runs on the event loop only).
_exported: dict[Gauge, set[str]] = {}


def start_metrics_server(port: int, host: str) -> None:
    """Serve /metrics on ``host``:``port`` from a background thread."""
    start_http_server(port, addr=host)
