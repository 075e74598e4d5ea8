"""The api's Prometheus metrics (served at HTTP_PORT/metrics). Job types are labels only up to
METRICS_MAX_LABEL_VALUES distinct ones; later ones count as ``_other`` (shared.telemetry.LabelCap).

jobs_created_total{job_type}          jobs created by submits (idempotent replays excluded)
jobs_deduplicated_total{job_type}     submits answered with the existing job of their idempotency key
rpc_requests_total{method,code}       RPCs completed (REST calls included: the same wrapper counts them)
rpc_duration_seconds{method}          RPC handling time
jobs_pending_count, jobs_ready_count, the seed's queue-depth gauges, from a cached read of the job_counts
jobs_processing_count                 aggregate (QueueDepth): a scrape never waits for the database
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.jobs import JobStatus, SubmitResult
from shared.telemetry import JOB_TYPE_LABEL

__all__ = [
    "JOBS_CREATED",
    "QUEUE_DEPTH",
    "QUEUE_DEPTH_GAUGES",
    "QUEUE_DEPTH_MAX_AGE_SECONDS",
    "RPC_HANDLED",
    "RPC_SECONDS",
    "QueueDepth",
    "record_submitted",
]

log = logging.getLogger(__name__)

JOBS_CREATED = Counter("jobs_created_total", "Jobs created by submits (idempotent replays excluded)", ["job_type"])
JOBS_DEDUPLICATED = Counter(
    "jobs_deduplicated_total",
    "Submits answered with an existing job of the same idempotency key",
    ["job_type"],
)
RPC_HANDLED = Counter("rpc_requests_total", "RPCs completed, by method and status code", ["method", "code"])
RPC_SECONDS = Histogram(
    "rpc_duration_seconds",
    "RPC handling time, by method",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def record_submitted(results: Iterable[SubmitResult]) -> None:
    created = Tally(r.job.type for r in results if r.created)
    replayed = Tally(r.job.type for r in results if not r.created)
    for job_type, n in created.items():
        JOBS_CREATED.labels(JOB_TYPE_LABEL(job_type)).inc(n)
    for job_type, n in replayed.items():
        JOBS_DEDUPLICATED.labels(JOB_TYPE_LABEL(job_type)).inc(n)


# The seed's queue-depth gauges: name -> (status, help).
QUEUE_DEPTH_GAUGES = {
    "jobs_pending_count": (JobStatus.PENDING, "Jobs waiting for their run_at (scheduled, or backing off to retry)"),
    "jobs_ready_count": (JobStatus.READY, "Jobs due and waiting for an executor"),
    "jobs_processing_count": (JobStatus.PROCESSING, "Jobs leased by an executor"),
}
# A scrape finding the counts older than this starts one background read for the next scrape.
QUEUE_DEPTH_MAX_AGE_SECONDS = 5.0
# Counts older than this (the database is away) are not exported at all rather than shown stale.
QUEUE_DEPTH_STALE_SECONDS = 60.0


class QueueDepth(Collector):
    """jobs_pending_count, jobs_ready_count and jobs_processing_count, as the seed served them on the api.

    Read from the job_counts aggregate (one small query, never a scan of jobs) at most every
    ``max_age_seconds``, and only while someone scrapes. /metrics is served on the event loop, so a
    scrape never waits for that query: it answers with the last counts and, when they are older than
    ``max_age_seconds``, starts one read (a gateway call on the event loop) for the next scrape.
    """

    def __init__(
        self,
        max_age_seconds: float = QUEUE_DEPTH_MAX_AGE_SECONDS,
        stale_seconds: float = QUEUE_DEPTH_STALE_SECONDS,
    ) -> None:
        self.max_age_seconds = max_age_seconds
        self.stale_seconds = stale_seconds
        self._read: Callable[[], Awaitable[Mapping[JobStatus, int]]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counts: Mapping[JobStatus, int] = {}
        self._read_at = -math.inf
        self._reading = False
        self._lock = threading.Lock()

    def attach(self, read: Callable[[], Awaitable[Mapping[JobStatus, int]]]) -> None:
        """Count with ``read`` (jobs per status, from job_counts) on the running event loop from now on;
        the first read starts at once."""
        self._read = read
        self._loop = asyncio.get_running_loop()
        self._read_soon()

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(name, text) for name, (_, text) in QUEUE_DEPTH_GAUGES.items()]

    def collect(self) -> Iterable[Metric]:
        age = time.monotonic() - self._read_at
        if age > self.max_age_seconds:
            self._read_soon()
        if age > self.stale_seconds:
            return
        counts = self._counts
        for name, (status, text) in QUEUE_DEPTH_GAUGES.items():
            yield GaugeMetricFamily(name, text, value=counts.get(status, 0))

    def _read_soon(self) -> None:
        with self._lock:
            if self._read is None or self._loop is None or self._reading:
                return
            self._reading = True
        # Scrapes may come from any thread (the REST app's loop, or a test's registry read).
        asyncio.run_coroutine_threadsafe(self._read_counts(), self._loop)

    async def _read_counts(self) -> None:
        assert self._read is not None
        try:
            self._counts = dict(await self._read())
            self._read_at = time.monotonic()
        except Exception as error:  # the database is away: the gauges go stale, then silent
            log.debug("queue depth not read: %s", error)
        finally:
            with self._lock:
                self._reading = False


QUEUE_DEPTH = QueueDepth()
REGISTRY.register(QUEUE_DEPTH)


def exposition() -> bytes:
    """The /metrics body. With several api processes (API_PROCESSES), each writes its counters and
    histograms to files under PROMETHEUS_MULTIPROC_DIR and any of them serves the sum of all; the queue
    depth gauges are the same in every process, read from the database."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(QUEUE_DEPTH)
    return generate_latest(registry)
