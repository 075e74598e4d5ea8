"""Executor processes for tests, and submitting jobs to them and waiting for the outcome in the database.

The ``executors`` and ``start_executor`` fixtures of tests/conftest.py start ``Executor`` processes.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from shared.errors import DatabaseUnavailable
from shared.jobs import FINISHED_STATUSES, Job, JobStatus, NewJob
from tests.support.gateway import gateway
from tests.support.processes import STARTUP_TIMEOUT, ServiceProcess, free_port, wait_until

TEST_HANDLERS = "tests.handlers_for_tests"
# Quick loops, so tests do not wait on the production defaults.
FAST_EXECUTOR_ENV = {
    "EXECUTOR_POLL_INTERVAL_SECONDS": "0.2",
    "EXECUTOR_CANCEL_CHECK_INTERVAL_SECONDS": "0.2",
    "EXECUTOR_SHUTDOWN_GRACE_SECONDS": "5",
    "LOG_LEVEL": "INFO",
}


class Executor(ServiceProcess):
    """One executor process; ``metrics()`` scrapes its /metrics."""

    def __init__(self, database_url: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:
        self.metrics_port = free_port()
        super().__init__(
            "services.executor",
            {
                **FAST_EXECUTOR_ENV,
                "DATABASE_URL": database_url,
                "METRICS_PORT": str(self.metrics_port),
                "EXECUTOR_HANDLERS": TEST_HANDLERS,
                **(env or {}),
            },
            args,
        )

    def wait_started(self, timeout: float = STARTUP_TIMEOUT) -> Executor:
        def started() -> bool:
            if not self.alive():
                raise AssertionError(
                    f"executor exited early ({self.process and self.process.returncode}):\n{self.output()}"
                )
            return " started: " in self.output()

        wait_until(started, timeout, what="the executor to start")
        return self

    def metrics(self) -> dict[str, float]:
        """Samples by ``name{label="value",...}``, labels sorted: ``jobs_completed_total{job_type="echo"}``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            body = response.read().decode()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def metric(self, name: str, **labels: str) -> float:
        key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
        return self.metrics().get(key, 0.0)

    def wait_stopped(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout)


@contextmanager
def running_executors(
    database_url: str, count: int, args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> Iterator[list[Executor]]:
    """``count`` executors started together and waited for; stopped (SIGTERM) at the end."""
    started = [Executor(database_url, args, env) for _ in range(count)]
    for executor in started:
        executor.start()
    try:
        for executor in started:
            executor.wait_started()
        yield started
    finally:
        for executor in started:
            executor.stop()


def submit(
    engine: Engine, job_type: str, payload: dict[str, Any] | None = None, count: int = 1, **fields: Any
) -> list[int]:
    """Submit ``count`` jobs through the API's store (as the API does); their ids."""
    fields.setdefault("timeout_seconds", 30)
    jobs = [NewJob(job_type, dict(payload or {}), **fields) for _ in range(count)]
    ids: list[int] = []
    for start in range(0, len(jobs), 1000):
        chunk = jobs[start : start + 1000]
        ids += [result.job.job_id for result in gateway(engine).submit_jobs([job.validate(1 << 20) for job in chunk])]
    return ids


def get_jobs(engine: Engine, ids: Sequence[int]) -> dict[int, Job]:
    jobs: dict[int, Job] = gateway(engine).get_jobs(ids)
    return jobs


def wait_for_jobs(
    engine: Engine,
    ids: Sequence[int],
    statuses: frozenset[JobStatus] | set[JobStatus] = FINISHED_STATUSES,
    timeout: float = 60,
) -> dict[int, Job]:
    """Wait until every job is in one of ``statuses``; the jobs."""
    found: dict[int, Job] = {}

    def done() -> bool:
        nonlocal found
        try:
            found = get_jobs(engine, ids)
        except DatabaseUnavailable:
            return False  # a pooled connection from before a database restart: the next try gets a fresh one
        return len(found) == len(ids) and all(job.status in statuses for job in found.values())

    try:
        wait_until(done, timeout, interval=0.05, what=f"jobs to reach {sorted(s.value for s in statuses)}")
    except AssertionError:
        counts: dict[str, int] = {}
        for job in found.values():
            counts[job.status.value] = counts.get(job.status.value, 0) + 1
        raise AssertionError(
            f"jobs did not reach {sorted(s.value for s in statuses)} in {timeout}s: {counts}"
        ) from None
    return found
