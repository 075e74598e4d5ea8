"""Metrics an attacker cannot grow or reach (issue 15, findings 3 and 4): client-chosen label values (job
types, schedule names) are capped by METRICS_MAX_LABEL_VALUES in the api, the executor and the scheduler,
and the executor's and scheduler's /metrics listen on METRICS_BIND_HOST, 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from shared.jobs import JobStatus
from tests.support.api import running_api
from tests.support.executors import Executor, submit, wait_for_jobs
from tests.support.processes import ServiceProcess, free_port, wait_until
from tests.support.scheduler import Scheduler


def labels_of(port: int, metric: str, label: str, host: str = "127.0.0.1") -> dict[str, float]:
    """The values of ``label`` on the samples of ``metric`` that /metrics at ``host``:``port`` serves."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == metric and label in sample.labels:
                found[sample.labels[label]] = found.get(sample.labels[label], 0) + sample.value
    return found


def test_the_api_labels_at_most_the_cap_of_job_types(database_url: str, tmp_path: Path) -> None:
    with running_api(database_url, tmp_path, {"METRICS_MAX_LABEL_VALUES": "3"}) as api:
        for index in range(6):
            assert api.post("/jobs", {"type": f"capped.api{index}"}).status == 200
        created = labels_of(api.http_port, "jobs_created_total", "job_type")
    assert created == {"capped.api0": 1, "capped.api1": 1, "capped.api2": 1, "_other": 3}


def test_the_executor_labels_at_most_the_cap_of_job_types(
    engine: Engine, start_executor: Callable[..., Executor]
) -> None:
    types = ["echo", "sleep", "tests.async_sleep_then_echo"]
    executor = start_executor("--types", ",".join(types), env={"METRICS_MAX_LABEL_VALUES": "2"})
    ids = [job_id for job_type in types for job_id in submit(engine, job_type, {"seconds": 0}, count=2)]
    jobs = wait_for_jobs(engine, ids, {JobStatus.COMPLETED}, timeout=60)
    assert len(jobs) == 6

    def counted() -> dict[str, float]:
        return labels_of(executor.metrics_port, "jobs_completed_total", "job_type")

    wait_until(lambda: sum(counted().values()) == 6, timeout=30, what="six completions counted")
    completed = counted()
    assert len(completed) == 3 and completed["_other"] == 2, completed
    assert set(completed) - {"_other"} < set(types)
    durations = labels_of(executor.metrics_port, "job_duration_seconds_count", "job_type")
    assert set(durations) == set(completed)


def test_the_scheduler_labels_at_most_the_cap_of_job_types_and_schedule_names(
    database_url: str, tmp_path: Path
) -> None:
    with running_api(database_url, tmp_path) as api:
        for job_type in ("capped.ready1", "capped.ready2", "capped.ready3"):  # no executor: they stay READY
            assert api.post("/jobs", {"type": job_type}).status == 200
        for name in ("capped-a", "capped-b", "capped-c"):
            body = {"name": name, "cron": "* * * * * *", "job": {"type": "capped.schedule"}}
            assert api.post("/schedules", body).status == 200
        scheduler = Scheduler(database_url, tmp_path, METRICS_MAX_LABEL_VALUES="1")
        scheduler.start()
        try:
            scheduler.wait_until_leader()

            def by_schedule() -> dict[str, float]:
                return labels_of(scheduler.metrics_port, "schedule_occurrences_submitted_total", "schedule")

            wait_until(lambda: by_schedule().get("_other", 0) >= 2, timeout=60, what="occurrences counted")
            assert len(by_schedule()) == 2, by_schedule()

            def ready() -> dict[str, float]:
                return labels_of(scheduler.metrics_port, "jobs_ready_by_type", "job_type")

            # four READY types (three capped.readyN and capped.schedule): one label and _other; the gauge is
            # sampled by a loop, so the occurrences just counted may not be in it yet
            wait_until(lambda: ready().get("_other", 0) >= 3, timeout=30, what="READY jobs sampled")
            assert len(ready()) == 2, ready()
        finally:
            scheduler.stop()
            for name in ("capped-a", "capped-b", "capped-c"):
                api.request("DELETE", f"/schedules/{name}")


def _reachable(host: str, port: int) -> bool:
    try:
        labels_of(port, "process_cpu_seconds_total", "none", host=host)
    except OSError:
        return False
    return True


@pytest.mark.parametrize("service", ["services.executor", "services.scheduler"])
def test_metrics_listen_on_localhost_unless_told_otherwise(database_url: str, tmp_path: Path, service: str) -> None:
    """127.0.0.2 is this machine too, but not an address a socket bound to 127.0.0.1 answers on."""
    for bind_host, elsewhere in [(None, False), ("0.0.0.0", True)]:
        port = free_port()
        env = {"DATABASE_URL": database_url, "METRICS_PORT": str(port), "EXECUTOR_HANDLERS": ""}
        if bind_host is not None:
            env["METRICS_BIND_HOST"] = bind_host
        with ServiceProcess(service, env, log_dir=tmp_path).start() as process:
            process.wait_for_port(port)
            assert _reachable("127.0.0.1", port)
            assert _reachable("127.0.0.2", port) is elsewhere, bind_host
