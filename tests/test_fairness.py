"""Fair share (docs/fairness.md): within a type and priority, READY jobs are leased round-robin across
their fairness keys, so one key's backlog cannot hold back another key's jobs.

The ordering is checked where it is decided (the lease statement, against PostgreSQL) and as users see
it (a real executor draining a real backlog). Start order comes from the database: ``started_at`` is
the moment of the lease statement, the same for every job of one lease.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import grpc
import pytest
from sqlalchemy import Engine

from jobclient import JobClient
from shared.database import LeasedJob, fairness_turn, next_start_key
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer
from tests.support.executors import Executor, submit, wait_for_jobs
from tests.support.gateway import gateway
from tests.support.rpc_errors import field_violations


def submit_keyed(stub: JobServiceStub, count: int, key: str | None, priority: int = 5) -> list[int]:
    """``count`` echo jobs with this fairness key, through the api, 1000 per SubmitJobs call."""
    request = pb.SubmitJobRequest(type="echo", priority=priority)
    if key is not None:
        request.fairness_key = key
    ids: list[int] = []
    for start in range(0, count, 1000):
        reply = stub.SubmitJobs(pb.SubmitJobsRequest(jobs=[request] * min(1000, count - start)))
        ids += [result.job.job_id for result in reply.results]
    return ids


def start_times(engine: Engine, ids: Sequence[int]) -> list[datetime]:
    jobs = wait_for_jobs(engine, ids, timeout=120)
    assert all(job.status.value == "COMPLETED" and job.started_at is not None for job in jobs.values())
    return sorted(job.started_at for job in jobs.values() if job.started_at is not None)


def test_a_backlog_of_one_key_does_not_hold_back_the_others(
    stub: JobServiceStub, engine: Engine, start_executor: Callable[..., Executor]
) -> None:
    backlog = submit_keyed(stub, 3000, "tenant-a")
    other = submit_keyed(stub, 30, "tenant-b")
    keyless = submit_keyed(stub, 30, None)  # jobs without a key are one more group
    start_executor("--concurrency", "10")
    a = start_times(engine, backlog)
    hundredth_of_a = a[99]
    assert max(start_times(engine, other)) < hundredth_of_a
    assert max(start_times(engine, keyless)) < hundredth_of_a


def test_priority_still_comes_first(
    stub: JobServiceStub, engine: Engine, start_executor: Callable[..., Executor]
) -> None:
    low = submit_keyed(stub, 300, "tenant-a", priority=5)
    high = submit_keyed(stub, 100, "tenant-b", priority=1) + submit_keyed(stub, 100, "tenant-c", priority=1)
    start_executor("--concurrency", "10")
    # The last lease of priority-1 jobs may take the first priority-5 ones along: the same started_at.
    assert max(start_times(engine, high)) <= min(start_times(engine, low))


def lease_keys(engine: Engine, rounds: int, limit: int) -> list[list[str]]:
    """The fairness keys of ``rounds`` leases of ``limit`` echo jobs, each starting where the last stopped."""
    db = gateway(engine)
    start = ""
    leases: list[list[str]] = []
    for _ in range(rounds):
        jobs: list[LeasedJob] = db.lease_jobs("tests", ["echo"], limit, 30, {"echo": start})
        start = next_start_key(start, jobs, fairness_turn(limit))
        leases.append(sorted(job.fairness_key for job in jobs))
    return leases


def test_every_key_takes_its_turn_when_there_are_more_keys_than_slots(engine: Engine) -> None:
    for key in ("k1", "k2", "k3", "k4", "k5"):
        submit(engine, "echo", count=3, fairness_key=key)
    submit(engine, "echo", count=3)  # no key: the group ''
    # The group without a key ('') sorts first; the first round starts with it.
    assert lease_keys(engine, 10, 2) == [
        ["", "k1"],
        ["k2", "k3"],
        ["k4", "k5"],
        ["", "k1"],
        ["k2", "k3"],
        ["k4", "k5"],
        ["", "k1"],
        ["k2", "k3"],
        ["k4", "k5"],
        [],
    ]


def test_a_big_lease_gives_each_key_a_turn_of_several_jobs_and_the_next_lease_goes_on(engine: Engine) -> None:
    for key in ("a", "b", "c"):
        submit(engine, "echo", count=60, fairness_key=key)
    # 43 slots: turns of 6 jobs (a lease touches at most 8 keys with big backlogs): two rounds of a b c
    # (36 jobs), then a's turn and 1 job of b's. b's turn was cut to less than half: the next lease starts
    # with b, and this time c's turn is cut.
    assert fairness_turn(43) == 6
    first, second, third = lease_keys(engine, 3, 43)
    assert first == ["a"] * 18 + ["b"] * 13 + ["c"] * 12
    assert second == ["a"] * 12 + ["b"] * 18 + ["c"] * 13
    assert third == ["a"] * 13 + ["b"] * 12 + ["c"] * 18


def test_a_turn_cut_to_half_or_more_moves_on(engine: Engine) -> None:
    for key in ("a", "b", "c"):
        submit(engine, "echo", count=60, fairness_key=key)
    # 46 slots, turns of 6: two rounds, then a's turn and 4 jobs of b's; the next lease starts after b.
    first, second = lease_keys(engine, 2, 46)
    assert first == ["a"] * 18 + ["b"] * 16 + ["c"] * 12
    assert second == ["a"] * 16 + ["b"] * 12 + ["c"] * 18


def test_a_lease_shares_its_slots_and_a_key_alone_gets_them_all(engine: Engine) -> None:
    submit(engine, "echo", count=2, fairness_key="small")
    submit(engine, "echo", count=50, fairness_key="big")
    submit(engine, "echo", count=50, fairness_key="other", priority=6)
    # 10 slots over two keys: "small" has only 2, so "big" takes the other 8 (work-conserving), and
    # none goes to priority 6 while priority 5 has jobs left.
    [first] = lease_keys(engine, 1, 10)
    assert first == ["big"] * 8 + ["small"] * 2
    # Then "big" alone: the whole lease, until its jobs run out; then priority 6.
    assert lease_keys(engine, 3, 20) == [["big"] * 20, ["big"] * 20, ["big"] * 2 + ["other"] * 18]


def test_fairness_key_is_validated_and_shown(stub: JobServiceStub, api: ApiServer, db: str) -> None:
    for key in ("", "k" * 129, "tab\there", "line\nbreak"):
        with pytest.raises(grpc.RpcError) as caught:
            stub.SubmitJob(pb.SubmitJobRequest(type="echo", fairness_key=key))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(caught.value) == ["fairness_key"]
        refused = api.post("/jobs", {"type": "echo", "fairness_key": key})
        assert refused.status == 400 and "fairness_key" in refused.body["message"], refused.body
    assert len(stub.ListJobs(pb.ListJobsRequest()).jobs) == 0  # nothing stored

    job = stub.SubmitJob(pb.SubmitJobRequest(type="echo", fairness_key="tenant 42 ✓")).job
    assert job.fairness_key == "tenant 42 ✓"
    shown = api.get(f"/jobs/{job.job_id}").body
    assert shown["fairness_key"] == "tenant 42 ✓"
    posted = api.post("/jobs", {"type": "echo", "fairness_key": "k" * 128})
    assert posted.status == 200 and posted.body["fairness_key"] == "k" * 128
    plain = api.post("/jobs", {"type": "echo"}).body
    assert plain["fairness_key"] is None
    assert not stub.GetJob(pb.GetJobRequest(job_id=plain["job_id"])).HasField("fairness_key")

    with JobClient(f"127.0.0.1:{api.grpc_port}") as client:
        submitted = client.submit("echo", fairness_key="tenant-7")
        assert submitted.fairness_key == "tenant-7"
        assert client.get(submitted.job_id).fairness_key == "tenant-7"
        assert client.get(plain["job_id"]).fairness_key is None


def test_a_schedule_keeps_the_fairness_key_of_its_jobs(stub: JobServiceStub, engine: Engine) -> None:
    schedule = pb.Schedule(
        name="tenant-report",
        cron="0 3 * * *",
        job=pb.SubmitJobRequest(type="echo", fairness_key="tenant-9"),
    )
    created = stub.CreateSchedule(pb.CreateScheduleRequest(schedule=schedule))
    assert created.job.fairness_key == "tenant-9"
    stored = gateway(engine).get_schedule("tenant-report")
    occurrence = stored.template.new_job(stored.name, "key", stored.next_run_at)
    assert occurrence.job.fairness_key == "tenant-9"
