"""Rate and concurrency limits per job type, as users see them: set through the api (gRPC and REST),
enforced across three real executor processes, whatever each of them has free.

Running intervals come from the handlers (tests/handlers_for_limits.py: each returns when it started
and finished), so overlaps are computed exactly afterwards; start times of attempts come from the
database (started_at), which is what the rate limit counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from sqlalchemy import Engine, text

from shared.jobs import Job, JobStatus
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer
from tests.support.executors import Executor, running_executors, wait_for_jobs
from tests.support.rpc_errors import field_violations

LIMITED = "tests.limited"
UNLIMITED = "tests.unlimited"
EXECUTORS = 3
CONCURRENCY = 10


@pytest.fixture(scope="module")
def executors(database_url: str) -> Iterator[list[Executor]]:
    """Three executors, 10 slots each, running the timed handlers; shared by this module's tests."""
    env = {"EXECUTOR_HANDLERS": "tests.handlers_for_limits", "EXECUTOR_POLL_INTERVAL_SECONDS": "0.5"}
    with running_executors(database_url, EXECUTORS, ["--concurrency", str(CONCURRENCY)], env) as started:
        yield started


def submit(stub: JobServiceStub, job_type: str, count: int, seconds: float, key: str | None = None) -> list[int]:
    payload = struct_pb2.Struct()
    payload.update({"seconds": seconds})
    request = pb.SubmitJobRequest(type=job_type, payload=payload, max_attempts=1)
    if key is not None:
        request.concurrency_key = key
    reply = stub.SubmitJobs(pb.SubmitJobsRequest(jobs=[request] * count))
    return [result.job.job_id for result in reply.results]


def intervals(jobs: Sequence[Job]) -> list[tuple[float, float]]:
    assert all(job.status == JobStatus.COMPLETED and job.result is not None for job in jobs), [
        (job.status, job.error_message) for job in jobs
    ]
    return [(float(job.result["started"]), float(job.result["finished"])) for job in jobs if job.result]


def most_at_once(spans: Sequence[tuple[float, float]]) -> int:
    """The largest number of intervals running at one instant (an end before a start at the same time)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def processing(engine: Engine, job_type: str) -> int:
    with engine.connect() as conn:
        query = text("SELECT count(*) FROM jobs WHERE type = :type AND status = 'PROCESSING'")
        return int(conn.execute(query, {"type": job_type}).scalar_one())


def holds(executors: Sequence[Executor], limit: str) -> float:
    """lease_limit_holds_total of the limited type for ``limit``, summed over the executors."""
    return sum(executor.metric("lease_limit_holds_total", job_type=LIMITED, limit=limit) for executor in executors)


class Sampler:
    """Counts the PROCESSING jobs of a type every few milliseconds in a thread; keeps the highest count."""

    def __init__(self, engine: Engine, job_type: str) -> None:
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(engine, job_type), daemon=True)

    def _run(self, engine: Engine, job_type: str) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, processing(engine, job_type))
            self.samples += 1
            self._stop.wait(0.01)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- enforcement across executors -------------------------------------------------------------------


def test_max_running_holds_across_executors_while_other_types_run_freely(
    stub: JobServiceStub, engine: Engine, executors: list[Executor]
) -> None:
    stub.SetTypeLimits(pb.SetTypeLimitsRequest(type=LIMITED, max_running=2))
    with Sampler(engine, LIMITED) as sampler:
        limited = submit(stub, LIMITED, 12, seconds=0.3)
        unlimited = submit(stub, UNLIMITED, 60, seconds=0.3)
        jobs = wait_for_jobs(engine, limited + unlimited, timeout=60)
    limited_spans = intervals([jobs[i] for i in limited])
    unlimited_spans = intervals([jobs[i] for i in unlimited])
    assert sampler.samples > 10
    assert sampler.peak <= 2
    assert most_at_once(limited_spans) == 2  # the limit, and all of it used
    # 30 slots in all: the other type is not held to the limit, and does not wait for the limited one.
    assert most_at_once(unlimited_spans) > 2
    assert max(end for _, end in unlimited_spans) < max(end for _, end in limited_spans)
    assert holds(executors, "max_running") > 0


def test_max_running_per_key_never_overlaps_one_key_but_runs_keys_in_parallel(
    stub: JobServiceStub, engine: Engine, executors: list[Executor]
) -> None:
    stub.SetTypeLimits(pb.SetTypeLimitsRequest(type=LIMITED, max_running_per_key=1))
    keys = ["customer-1", "customer-2", "customer-3", "customer-4"]
    by_key = {key: submit(stub, LIMITED, 4, seconds=0.2, key=key) for key in keys}
    keyless = submit(stub, LIMITED, 6, seconds=0.3)
    jobs = wait_for_jobs(engine, [i for ids in by_key.values() for i in ids] + keyless, timeout=60)
    for key, ids in by_key.items():
        assert most_at_once(intervals([jobs[i] for i in ids])) == 1, key
    assert most_at_once(intervals([jobs[i] for ids in by_key.values() for i in ids])) > 1
    # Jobs without a key are limited only by max_running, which is not set.
    assert most_at_once(intervals([jobs[i] for i in keyless])) > 1


def test_rate_limit_is_a_sliding_window_across_executors(
    stub: JobServiceStub, engine: Engine, executors: list[Executor]
) -> None:
    stub.SetTypeLimits(pb.SetTypeLimitsRequest(type=LIMITED, rate_limit=10, rate_period_seconds=2))
    ids = submit(stub, LIMITED, 30, seconds=0)
    jobs = wait_for_jobs(engine, ids, timeout=60)
    intervals(list(jobs.values()))
    assert {job.attempts for job in jobs.values()} == {1}
    starts = sorted(job.started_at.timestamp() for job in jobs.values() if job.started_at is not None)
    assert len(starts) == 30
    for first in starts:
        assert sum(1 for start in starts if first <= start < first + 2.0) <= 10
    # 30 starts at 10 per 2 s: the last one at least 4 s after the first.
    assert starts[-1] - starts[0] >= 4.0
    assert holds(executors, "rate_limit") > 0


def test_deleting_the_limit_lets_held_back_jobs_run_at_full_speed(
    stub: JobServiceStub, engine: Engine, executors: list[Executor]
) -> None:
    stub.SetTypeLimits(pb.SetTypeLimitsRequest(type=LIMITED, max_running=1))
    ids = submit(stub, LIMITED, 20, seconds=0.5)

    def finished() -> int:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM jobs WHERE type = :type AND status = 'COMPLETED'")
            return int(conn.execute(query, {"type": LIMITED}).scalar_one())

    deadline = time.monotonic() + 30
    while finished() < 2:
        assert time.monotonic() < deadline, "the limited jobs did not run"
        time.sleep(0.05)
    assert processing(engine, LIMITED) <= 1
    stub.DeleteTypeLimits(pb.DeleteTypeLimitsRequest(type=LIMITED))
    deleted_at = time.time()
    jobs = wait_for_jobs(engine, ids, timeout=30)
    spans = intervals(list(jobs.values()))
    before = [span for span in spans if span[0] < deleted_at]
    after = [span for span in spans if span[0] >= deleted_at]
    assert most_at_once(before) == 1
    assert len(after) >= 10
    assert most_at_once(after) >= 10


# -- the API ---------------------------------------------------------------------------------------


def test_set_list_and_delete_over_grpc(stub: JobServiceStub) -> None:
    first = stub.SetTypeLimits(pb.SetTypeLimitsRequest(type="send_email", rate_limit=100))
    assert first.type == "send_email" and first.rate_limit == 100 and first.rate_period_seconds == 60
    assert not first.HasField("max_running") and not first.HasField("max_running_per_key")
    assert first.HasField("updated_at")
    # A second call replaces every field: max_running goes, rate_limit goes.
    replaced = stub.SetTypeLimits(pb.SetTypeLimitsRequest(type="send_email", max_running=5, max_running_per_key=1))
    assert (replaced.max_running, replaced.max_running_per_key) == (5, 1)
    assert not replaced.HasField("rate_limit") and not replaced.HasField("rate_period_seconds")
    stub.SetTypeLimits(pb.SetTypeLimitsRequest(type="reports", rate_limit=3, rate_period_seconds=3600))
    listed = stub.ListTypeLimits(pb.ListTypeLimitsRequest()).limits
    assert [(item.type, item.rate_limit, item.rate_period_seconds) for item in listed] == [
        ("reports", 3, 3600),
        ("send_email", 0, 0),
    ]
    stub.DeleteTypeLimits(pb.DeleteTypeLimitsRequest(type="send_email"))
    assert [item.type for item in stub.ListTypeLimits(pb.ListTypeLimitsRequest()).limits] == ["reports"]
    with pytest.raises(grpc.RpcError) as missing:
        stub.DeleteTypeLimits(pb.DeleteTypeLimitsRequest(type="send_email"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "send_email" in (missing.value.details() or "")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "", "max_running": 1}, "type"),
        ({"type": "Bad Type", "max_running": 1}, "type"),
        ({"type": "t", "max_running": 0}, "max_running"),
        ({"type": "t", "max_running_per_key": 10_001}, "max_running_per_key"),
        ({"type": "t", "rate_limit": -1}, "rate_limit"),
        ({"type": "t", "rate_limit": 5, "rate_period_seconds": 0}, "rate_period_seconds"),
        ({"type": "t", "rate_limit": 5, "rate_period_seconds": 86_401}, "rate_period_seconds"),
        ({"type": "t", "max_running": 1, "rate_period_seconds": 10}, "rate_period_seconds"),
        ({"type": "t"}, "max_running"),
    ],
)
def test_bad_limits_name_the_field_and_change_nothing(stub: JobServiceStub, fields: dict[str, Any], field: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.SetTypeLimits(pb.SetTypeLimitsRequest(**fields))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == [field]
    assert list(stub.ListTypeLimits(pb.ListTypeLimitsRequest()).limits) == []


def test_concurrency_key_is_validated_at_submit(stub: JobServiceStub, db: str) -> None:
    for key in ("", "k" * 257, "a\x00b"):
        with pytest.raises(grpc.RpcError) as caught:
            stub.SubmitJob(pb.SubmitJobRequest(type="echo", concurrency_key=key))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(caught.value) == ["concurrency_key"]
    job = stub.SubmitJob(pb.SubmitJobRequest(type="echo", concurrency_key="customer-42")).job
    assert job.concurrency_key == "customer-42"


def test_put_get_and_delete_over_rest(api: ApiServer) -> None:
    put = api.request("PUT", "/limits/send_email", {"rate_limit": 100, "rate_period_seconds": 60})
    assert put.status == 200, put.body
    assert put.body["type"] == "send_email"
    assert (put.body["rate_limit"], put.body["rate_period_seconds"], put.body["max_running"]) == (100, 60, None)
    assert put.body["updated_at"].endswith("Z")
    listed = api.get("/limits")
    assert listed.status == 200
    assert [item["type"] for item in listed.body["limits"]] == ["send_email"]
    bad = api.request("PUT", "/limits/send_email", {"max_running": 0})
    assert bad.status == 400
    assert bad.body["details"][-1]["fieldViolations"][0]["field"] == "max_running"
    bad_type = api.request("PUT", "/limits/BAD", {"max_running": 1})
    assert bad_type.status == 400 and "type" in bad_type.body["message"]
    deleted = api.request("DELETE", "/limits/send_email")
    assert deleted.status == 200 and deleted.body == {}
    missing = api.request("DELETE", "/limits/send_email")
    assert missing.status == 404 and missing.body["status"] == "NOT_FOUND"
    assert api.get("/limits").body == {"limits": []}
