"""Unique while active: a submit whose unique_key an unfinished job holds returns that job."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import grpc
import psycopg2
import pytest
from google.protobuf import struct_pb2

from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer
from tests.support.processes import wait_until
from tests.support.rpc_errors import field_violations

FAR_FUTURE = datetime(2099, 1, 1, tzinfo=timezone.utc)
# No executor has a handler for this type, so its jobs stay READY.
UNHANDLED = "tests.no_handler"


def request(job_type: str = UNHANDLED, **fields: Any) -> pb.SubmitJobRequest:
    payload = struct_pb2.Struct()
    payload.update(fields.pop("payload", {}))
    return pb.SubmitJobRequest(type=job_type, payload=payload, **fields)


def sql(db: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute(statement, args)
        return cur.fetchall()


def get(stub: JobServiceStub, job_id: int) -> pb.Job:
    return stub.GetJob(pb.GetJobRequest(job_id=job_id))


def test_a_second_submit_while_the_first_is_unfinished_returns_it(stub: JobServiceStub, db: str) -> None:
    first = stub.SubmitJob(request(unique_key="report-42", payload={"n": 1}))
    assert first.created and first.job.unique_key == "report-42"
    # Type and payload need not match: the key alone decides.
    second = stub.SubmitJob(request("other.type", unique_key="report-42", payload={"n": 2}))
    assert not second.created
    assert second.job.job_id == first.job.job_id
    assert second.job.type == UNHANDLED
    # Other keys, and jobs without a key, are not affected.
    assert stub.SubmitJob(request(unique_key="report-43")).created
    assert stub.SubmitJob(request()).created
    assert stub.SubmitJob(request()).created

    # Once the holder finished, the key is free: a new job is made.
    stub.CancelJob(pb.CancelJobRequest(job_id=first.job.job_id))
    third = stub.SubmitJob(request(unique_key="report-42"))
    assert third.created and third.job.job_id != first.job.job_id
    assert sql(db, "SELECT count(*) FROM jobs WHERE unique_key = 'report-42'") == [(2,)]


def test_a_processing_job_holds_its_key_until_it_completes(stub: JobServiceStub, workers: None, db: str) -> None:
    first = stub.SubmitJob(request("sleep", unique_key="sync-7", payload={"seconds": 2})).job
    wait_until(lambda: get(stub, first.job_id).status == pb.Job.PROCESSING, 20, what="the job runs")
    again = stub.SubmitJob(request("sleep", unique_key="sync-7", payload={"seconds": 0}))
    assert not again.created and again.job.job_id == first.job_id
    assert again.job.status == pb.Job.PROCESSING
    wait_until(lambda: get(stub, first.job_id).status == pb.Job.COMPLETED, 30, what="the job completes")
    after = stub.SubmitJob(request("sleep", unique_key="sync-7", payload={"seconds": 0}))
    assert after.created and after.job.job_id != first.job_id


def test_a_waiting_job_holds_its_key(stub: JobServiceStub) -> None:
    root = stub.SubmitJob(request()).job
    waiting = stub.SubmitJob(request(unique_key="after-root", depends_on=[root.job_id])).job
    assert waiting.status == pb.Job.WAITING
    again = stub.SubmitJob(request(unique_key="after-root"))
    assert not again.created and again.job.job_id == waiting.job_id
    # Also through the dependency path (a submit with dependencies of its own).
    merged = stub.SubmitJob(request(unique_key="after-root", depends_on=[root.job_id]))
    assert not merged.created and merged.job.job_id == waiting.job_id


@pytest.mark.parametrize("batch", [False, True])
def test_fifty_concurrent_submits_of_one_unique_key_make_one_active_job(
    stub: JobServiceStub, db: str, batch: bool
) -> None:
    barrier = threading.Barrier(50)

    def submit(n: int) -> pb.SubmitJobResponse:
        message = request(unique_key="hot-key", payload={"n": n})
        barrier.wait()
        if batch:
            return stub.SubmitJobs(pb.SubmitJobsRequest(jobs=[request(), message])).results[1]
        return stub.SubmitJob(message)

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(submit, range(50)))
    assert len({r.job.job_id for r in replies}) == 1
    assert sum(r.created for r in replies) == 1
    assert sql(db, "SELECT count(*) FROM jobs WHERE unique_key = 'hot-key'") == [(1,)]


def test_submits_racing_with_holders_that_finish_get_an_unfinished_or_new_job(
    stub: JobServiceStub, workers: None, db: str
) -> None:
    """Executors complete the holder again and again while submits arrive: never an error, never two
    unfinished jobs with the key, and every job made is accounted for by exactly one created=True."""
    replies: list[pb.SubmitJobResponse] = []
    lock = threading.Lock()

    def submit(n: int) -> None:
        for i in range(25):
            reply = stub.SubmitJob(request("echo", unique_key="busy", payload={"n": n, "i": i}))
            with lock:
                replies.append(reply)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(submit, range(8)))
    made = {r.job.job_id for r in replies if r.created}
    assert {r.job.job_id for r in replies} == made
    assert len(made) == sum(r.created for r in replies)
    assert all(r.job.unique_key == "busy" for r in replies)
    wait_until(
        lambda: sql(db, "SELECT count(*) FROM jobs WHERE unique_key = 'busy' AND status <> 'COMPLETED'") == [(0,)],
        30,
        what="every job with the key COMPLETED",
    )
    assert sql(db, "SELECT count(*) FROM jobs WHERE unique_key = 'busy'") == [(len(made),)]


def test_repeated_keys_inside_one_batch_merge_with_the_first(stub: JobServiceStub) -> None:
    results = stub.SubmitJobs(
        pb.SubmitJobsRequest(
            jobs=[
                request(unique_key="k"),
                request(),
                request(unique_key="k", payload={"other": True}),
                request(unique_key="j"),
            ]
        )
    ).results
    assert [r.created for r in results] == [True, True, False, True]
    assert results[2].job.job_id == results[0].job.job_id


def test_unique_key_together_with_idempotency_key(stub: JobServiceStub, db: str) -> None:
    first = stub.SubmitJob(request(unique_key="u", idempotency_key="i-1")).job
    # A replay of the same submit: the idempotency key answers.
    replay = stub.SubmitJob(request(unique_key="u", idempotency_key="i-1"))
    assert not replay.created and replay.job.job_id == first.job_id
    # Another submit with the key held: merged into the holder; its own idempotency key is not stored.
    merged = stub.SubmitJob(request(unique_key="u", idempotency_key="i-2"))
    assert not merged.created and merged.job.job_id == first.job_id
    assert merged.job.idempotency_key == "i-1"

    stub.CancelJob(pb.CancelJobRequest(job_id=first.job_id))
    # The holder finished: a fresh key makes a new job, but the old idempotency key still names the old one.
    fresh = stub.SubmitJob(request(unique_key="u", idempotency_key="i-2"))
    assert fresh.created and fresh.job.job_id != first.job_id
    old = stub.SubmitJob(request(unique_key="u", idempotency_key="i-1"))
    assert not old.created and old.job.job_id == first.job_id and old.job.status == pb.Job.CANCELLED
    # The idempotency rule still refuses another type under a used key.
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitJob(request("other.type", unique_key="u", idempotency_key="i-1"))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_retry_of_a_job_whose_key_is_held_again_is_refused(stub: JobServiceStub) -> None:
    first = stub.SubmitJob(request(unique_key="nightly")).job
    stub.CancelJob(pb.CancelJobRequest(job_id=first.job_id))
    second = stub.SubmitJob(request(unique_key="nightly")).job
    with pytest.raises(grpc.RpcError) as caught:
        stub.RetryJob(pb.RetryJobRequest(job_id=first.job_id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "unique_key" in caught.value.details()
    stub.CancelJob(pb.CancelJobRequest(job_id=second.job_id))
    assert stub.RetryJob(pb.RetryJobRequest(job_id=first.job_id)).status == pb.Job.READY


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (pb.SubmitJobRequest(type="x", unique_key=""), "unique_key"),
        (pb.SubmitJobRequest(type="x", unique_key="k" * 257), "unique_key"),
        (pb.SubmitJobRequest(type="x", unique_key="a\x00b"), "unique_key"),
        (
            pb.SubmitJobsRequest(jobs=[pb.SubmitJobRequest(type="x"), pb.SubmitJobRequest(type="x", unique_key="")]),
            "jobs[1].unique_key",
        ),
    ],
)
def test_bad_unique_keys_are_refused_naming_the_field(stub: JobServiceStub, db: str, message: Any, field: str) -> None:
    method = stub.SubmitJobs if isinstance(message, pb.SubmitJobsRequest) else stub.SubmitJob
    with pytest.raises(grpc.RpcError) as caught:
        method(message)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == [field]
    assert sql(db, "SELECT count(*) FROM jobs") == [(0,)]


def test_rest_submit_with_a_held_unique_key(api: ApiServer) -> None:
    first = api.post("/jobs", {"type": UNHANDLED, "unique_key": "rest-key"})
    assert first.status == 200 and first.body["unique_key"] == "rest-key"
    second = api.post("/jobs", {"type": UNHANDLED, "unique_key": "rest-key"})
    assert second.status == 200 and second.body["job_id"] == first.body["job_id"]
    batch = api.post("/jobs:batch", {"jobs": [{"type": UNHANDLED, "unique_key": "rest-key"}]})
    assert batch.body["results"][0]["created"] is False
