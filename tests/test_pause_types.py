"""Pausing a job type, as operators do it: through the api (REST and gRPC), against three real executor
processes. Attempt start times come from the database (started_at, set by the lease statement), so
"nothing started after the pause" is checked exactly, not by timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import grpc
import pytest
from sqlalchemy import Engine

from shared.jobs import Job, JobStatus
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer
from tests.support.executors import Executor, get_jobs, running_executors, wait_for_jobs
from tests.support.processes import wait_until
from tests.support.rpc_errors import field_violations

PAUSED = "tests.unlimited"
LIMITED = "tests.limited"
EXECUTORS = 3
CONCURRENCY = 4


@pytest.fixture(scope="module")
def three_executors(database_url: str) -> Iterator[list[Executor]]:
    """Three executors, 4 slots each, running the timed handlers of tests/handlers_for_limits.py."""
    env = {"EXECUTOR_HANDLERS": "tests.handlers_for_limits", "EXECUTOR_POLL_INTERVAL_SECONDS": "0.5"}
    with running_executors(database_url, EXECUTORS, ["--concurrency", str(CONCURRENCY)], env) as started:
        yield started


def submit(api: ApiServer, job_type: str, count: int, seconds: float) -> list[int]:
    job = {"type": job_type, "payload": {"seconds": seconds}, "max_attempts": 1}
    reply = api.post("/jobs:batch", {"jobs": [job] * count})
    assert reply.status == 200, reply.body
    return [result["job"]["job_id"] for result in reply.body["results"]]


def started_after(jobs: Sequence[Job], moment: float) -> list[int]:
    return [job.job_id for job in jobs if job.started_at is not None and job.started_at.timestamp() > moment]


def test_a_paused_type_starts_nothing_on_any_executor_and_resume_drains_it(
    api: ApiServer, engine: Engine, three_executors: list[Executor]
) -> None:
    backlog = submit(api, PAUSED, 100, seconds=0.3)
    wait_until(
        lambda: any(job.started_at is not None for job in get_jobs(engine, backlog).values()),
        30,
        what="the first attempts to start",
    )

    reply = api.post(f"/types/{PAUSED}:pause")
    paused_after = time.time()
    assert reply.status == 200, reply.body
    assert reply.body["type"] == PAUSED and reply.body["paused"] is True and reply.body["paused_at"]

    # Submits are accepted while paused; other types keep running on the same executors.
    accepted = submit(api, PAUSED, 10, seconds=0.01)
    other = submit(api, "tests.limited", 10, seconds=0.01)
    wait_for_jobs(engine, other, {JobStatus.COMPLETED}, timeout=30)
    # Attempts that were running finish normally; then the rest waits, READY, on every executor.
    wait_until(
        lambda: all(job.status is not JobStatus.PROCESSING for job in get_jobs(engine, backlog).values()),
        30,
        what="the running attempts to finish",
    )
    time.sleep(1.5)  # long enough for a dozen lease rounds of each executor
    jobs = list(get_jobs(engine, backlog + accepted).values())
    assert started_after(jobs, paused_after) == []
    waiting = [job for job in jobs if job.status is JobStatus.READY]
    assert len(waiting) >= 10, "the pause came after the whole backlog had started"

    listed = api.get("/types").body["types"]
    (summary,) = [item for item in listed if item["type"] == PAUSED]
    assert summary["paused"] is True and summary["counts"]["READY"] >= 10

    resumed_from = time.time()
    reply = api.post(f"/types/{PAUSED}:resume")
    assert reply.status == 200 and reply.body["paused"] is False and reply.body["paused_at"] is None
    finished = wait_for_jobs(engine, [job.job_id for job in waiting], {JobStatus.COMPLETED}, timeout=60)
    assert all(job.started_at is not None and job.started_at.timestamp() >= resumed_from for job in finished.values())


def test_a_paused_type_with_limits_starts_nothing_until_resumed(
    stub: JobServiceStub, engine: Engine, three_executors: list[Executor]
) -> None:
    stub.SetTypeLimits(pb.SetTypeLimitsRequest(type=LIMITED, max_running=2))
    paused = stub.PauseJobType(pb.PauseJobTypeRequest(type=LIMITED))
    paused_after = time.time()
    assert paused.paused and paused.limits.max_running == 2
    request = pb.SubmitJobRequest(type=LIMITED, max_attempts=1)
    request.payload.update({"seconds": 0.01})
    ids = [result.job.job_id for result in stub.SubmitJobs(pb.SubmitJobsRequest(jobs=[request] * 6)).results]
    time.sleep(1.5)
    jobs = get_jobs(engine, ids)
    assert {job.status for job in jobs.values()} == {JobStatus.READY}
    assert started_after(list(jobs.values()), paused_after) == []
    holds = [e.metric("lease_limit_holds_total", job_type=LIMITED, limit="paused") for e in three_executors]
    assert sum(holds) > 0

    stub.ResumeJobType(pb.ResumeJobTypeRequest(type=LIMITED))
    wait_for_jobs(engine, ids, {JobStatus.COMPLETED}, timeout=30)
    stub.DeleteTypeLimits(pb.DeleteTypeLimitsRequest(type=LIMITED))


def test_resume_wakes_the_executors_by_notification(
    api: ApiServer, engine: Engine, start_executor: Callable[..., Executor]
) -> None:
    """An executor that would not poll for an hour drains a resumed type: only jobs_ready can wake it."""
    job_type = "tests.async_sleep_then_echo"
    executor = start_executor("--types", job_type, env={"EXECUTOR_POLL_INTERVAL_SECONDS": "3600"})
    rounds = 'loop_duration_seconds_count{loop="lease_jobs"}'
    wait_until(lambda: executor.metrics().get(rounds, 0.0) > 0, 30, what="the executor's first lease round")
    assert api.post(f"/types/{job_type}:pause").status == 200
    before = executor.metrics()[rounds]
    ids = submit(api, job_type, 5, seconds=0)
    # The submit's notification woke the executor, which leased nothing: the type is paused.
    wait_until(lambda: executor.metrics().get(rounds, 0.0) > before, 30, what="a lease round after the submit")
    assert {job.status for job in get_jobs(engine, ids).values()} == {JobStatus.READY}

    assert api.post(f"/types/{job_type}:resume").status == 200
    wait_for_jobs(engine, ids, {JobStatus.COMPLETED}, timeout=30)


def test_unknown_types_may_be_paused_and_bad_names_are_refused(api: ApiServer, stub: JobServiceStub) -> None:
    reply = api.post("/types/not.submitted.yet:pause")
    assert reply.status == 200
    assert reply.body["paused"] is True and reply.body["counts"] == {} and reply.body["limits"] is None
    assert api.post("/types/not.submitted.yet:pause").body["paused_at"] == reply.body["paused_at"]

    bad = api.post("/types/Not%20A%20Type:pause")
    assert bad.status == 400 and bad.body["status"] == "INVALID_ARGUMENT"
    assert bad.body["details"][-1]["fieldViolations"][0]["field"] == "type"
    with pytest.raises(grpc.RpcError) as raised:
        stub.ResumeJobType(pb.ResumeJobTypeRequest(type=""))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value) == ["type"]

    assert api.post("/types/not.submitted.yet:resume").body["paused"] is False
    # Nothing left of the type (no jobs, limits or pause): it is no longer listed.
    assert "not.submitted.yet" not in [item["type"] for item in api.get("/types").body["types"]]


def test_list_job_types_pages_like_list_jobs(api: ApiServer) -> None:
    for name in ("page.a", "page.b", "page.c"):
        assert api.post(f"/types/{name}:pause").status == 200
    first = api.get("/types?page_size=2").body
    assert [item["type"] for item in first["types"]] == ["page.a", "page.b"] and first["next_page_token"]
    second = api.get(f"/types?page_size=2&page_token={first['next_page_token']}").body
    assert [item["type"] for item in second["types"]] == ["page.c"] and second["next_page_token"] == ""
    assert len(api.get("/types?page_size=0").body["types"]) == 3  # 0: the default page size
    refused = api.get("/types?page_size=501")
    assert refused.status == 400 and "page_size" in refused.body["message"]
    wrong = api.get("/types?page_token=djJ8c2NoZWR1bGVzfHg")  # "v2|schedules|x": another list's token
    assert wrong.status == 400 and "page_token" in wrong.body["message"]
