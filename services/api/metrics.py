"""The api's Prometheus metrics (served at HTTP_PORT/metrics)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import Counter, Histogram

from shared.jobs import SubmitResult

__all__ = ["DATABASE_ERRORS", "JOBS_CREATED", "RPC_HANDLED", "RPC_SECONDS", "record_submitted"]

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
DATABASE_ERRORS = Counter("database_errors_total", "Requests that failed because the database was unavailable")


def record_submitted(results: Iterable[SubmitResult]) -> None:
    created = Tally(r.job.type for r in results if r.created)
    replayed = Tally(r.job.type for r in results if not r.created)
    for job_type, n in created.items():
        JOBS_CREATED.labels(job_type).inc(n)
    for job_type, n in replayed.items():
        JOBS_DEDUPLICATED.labels(job_type).inc(n)
