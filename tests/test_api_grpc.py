"""JobService over gRPC with the generated stubs, as internal services call it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import grpc
import psycopg2
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer
from tests.support.rpc_errors import field_violations


def struct(**values: Any) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def sql(db: str, statement: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute(statement, args)
        return cur.fetchall() if cur.description else []


def code_of(call: grpc.RpcError) -> grpc.StatusCode:
    return call.code()


def test_submit_and_get(stub: JobServiceStub) -> None:
    reply = stub.SubmitJob(pb.SubmitJobRequest(type="send_email", payload=struct(to="a@example.com"), priority=2))
    assert reply.created
    job = stub.GetJob(pb.GetJobRequest(job_id=reply.job.job_id))
    assert job.type == "send_email"
    assert job.status == pb.Job.READY
    assert job.priority == 2
    assert dict(job.payload) == {"to": "a@example.com"}
    assert job.max_attempts == 3 and job.timeout_seconds == 300
    assert not job.HasField("started_at")


def test_scheduled_submit_is_pending(stub: JobServiceStub) -> None:
    when = timestamp_pb2.Timestamp()
    when.FromDatetime(datetime.now(timezone.utc) + timedelta(hours=1))
    job = stub.SubmitJob(pb.SubmitJobRequest(type="later", scheduled_at=when)).job
    assert job.status == pb.Job.PENDING
    assert job.run_at == when
    past = timestamp_pb2.Timestamp()
    past.FromDatetime(datetime.now(timezone.utc) - timedelta(hours=1))
    assert stub.SubmitJob(pb.SubmitJobRequest(type="late", scheduled_at=past)).job.status == pb.Job.READY


def test_invalid_argument_carries_the_field(stub: JobServiceStub, db: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitJob(pb.SubmitJobRequest(type="ok", priority=0))
    assert code_of(caught.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value) == ["priority"]
    assert sql(db, "SELECT count(*) FROM jobs") == [(0,)]


def test_not_found_and_failed_precondition(stub: JobServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetJob(pb.GetJobRequest(job_id=424242))
    assert code_of(missing.value) == grpc.StatusCode.NOT_FOUND
    job = stub.SubmitJob(pb.SubmitJobRequest(type="x")).job
    with pytest.raises(grpc.RpcError) as not_retryable:
        stub.RetryJob(pb.RetryJobRequest(job_id=job.job_id))
    assert code_of(not_retryable.value) == grpc.StatusCode.FAILED_PRECONDITION


def test_idempotency_replay_and_conflict(stub: JobServiceStub, db: str) -> None:
    request = pb.SubmitJobRequest(type="pay", payload=struct(amount=10), idempotency_key="order-1")
    first = stub.SubmitJob(request)
    again = stub.SubmitJob(request)
    assert first.created and not again.created
    assert again.job.job_id == first.job.job_id
    changed = pb.SubmitJobRequest(type="pay", payload=struct(amount=11), idempotency_key="order-1")
    with pytest.raises(grpc.RpcError) as conflict:
        stub.SubmitJob(changed)
    assert code_of(conflict.value) == grpc.StatusCode.ALREADY_EXISTS
    other_type = pb.SubmitJobRequest(type="refund", payload=struct(amount=10), idempotency_key="order-1")
    with pytest.raises(grpc.RpcError):
        stub.SubmitJob(other_type)
    assert sql(db, "SELECT count(*) FROM jobs") == [(1,)]


def test_fifty_concurrent_submits_of_one_key_make_one_job(stub: JobServiceStub, db: str) -> None:
    request = pb.SubmitJobRequest(type="race", payload=struct(n=1), idempotency_key="race-key")
    barrier = threading.Barrier(50)

    def submit(_: int) -> pb.SubmitJobResponse:
        barrier.wait()
        return stub.SubmitJob(request)

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(submit, range(50)))
    assert len({r.job.job_id for r in replies}) == 1
    assert sum(r.created for r in replies) == 1
    assert sql(db, "SELECT count(*) FROM jobs WHERE idempotency_key = 'race-key'") == [(1,)]


def test_submit_jobs_in_one_call_keeps_order_and_dedupes_keys(stub: JobServiceStub, db: str) -> None:
    stub.SubmitJob(pb.SubmitJobRequest(type="b", idempotency_key="existing"))
    reply = stub.SubmitJobs(
        pb.SubmitJobsRequest(
            jobs=[
                pb.SubmitJobRequest(type="a"),
                pb.SubmitJobRequest(type="b", idempotency_key="existing"),
                pb.SubmitJobRequest(type="c", idempotency_key="new"),
                pb.SubmitJobRequest(type="c", idempotency_key="new"),
                pb.SubmitJobRequest(type="d"),
            ]
        )
    )
    assert [r.job.type for r in reply.results] == ["a", "b", "c", "c", "d"]
    assert [r.created for r in reply.results] == [True, False, True, False, True]
    assert reply.results[2].job.job_id == reply.results[3].job.job_id
    assert sql(db, "SELECT count(*) FROM jobs") == [(4,)]


def test_submit_jobs_conflicting_key_inside_batch_rolls_back(stub: JobServiceStub, db: str) -> None:
    with pytest.raises(grpc.RpcError) as conflict:
        stub.SubmitJobs(
            pb.SubmitJobsRequest(
                jobs=[
                    pb.SubmitJobRequest(type="a"),
                    pb.SubmitJobRequest(type="c", idempotency_key="k"),
                    pb.SubmitJobRequest(type="other", idempotency_key="k"),
                ]
            )
        )
    assert code_of(conflict.value) == grpc.StatusCode.ALREADY_EXISTS
    assert sql(db, "SELECT count(*) FROM jobs") == [(0,)]


def test_list_filters_and_pages(stub: JobServiceStub) -> None:
    ids = [stub.SubmitJob(pb.SubmitJobRequest(type="t1" if i % 2 else "t2")).job.job_id for i in range(5)]
    stub.CancelJob(pb.CancelJobRequest(job_id=ids[0]))
    page = stub.ListJobs(pb.ListJobsRequest(page_size=2))
    assert [j.job_id for j in page.jobs] == [ids[4], ids[3]]
    rest = stub.ListJobs(pb.ListJobsRequest(page_size=10, page_token=page.next_page_token))
    assert [j.job_id for j in rest.jobs] == [ids[2], ids[1], ids[0]]
    assert rest.next_page_token == ""
    cancelled = stub.ListJobs(pb.ListJobsRequest(status=pb.Job.CANCELLED))
    assert [j.job_id for j in cancelled.jobs] == [ids[0]]
    t1 = stub.ListJobs(pb.ListJobsRequest(type="t1"))
    assert [j.job_id for j in t1.jobs] == [ids[3], ids[1]]
    both = stub.ListJobs(pb.ListJobsRequest(type="t2", status=pb.Job.READY))
    assert [j.job_id for j in both.jobs] == [ids[4], ids[2]]


def test_stats_report_failures(stub: JobServiceStub, db: str) -> None:
    for _ in range(3):
        stub.SubmitJob(pb.SubmitJobRequest(type="send_email"))
    failed = stub.SubmitJob(pb.SubmitJobRequest(type="process_data")).job
    sql(
        db,
        "UPDATE jobs SET status = 'FAILED', attempts = 3, error_message = 'SMTP connection timeout', "
        "finished_at = now() WHERE job_id = %s",
        failed.job_id,
    )
    stats = stub.GetStats(pb.GetStatsRequest())
    assert dict(stats.status_breakdown) == {
        "WAITING": 0,
        "PENDING": 0,
        "READY": 3,
        "PROCESSING": 0,
        "COMPLETED": 0,
        "FAILED": 1,
        "CANCELLED": 0,
    }
    assert dict(stats.type_breakdown) == {"send_email": 3, "process_data": 1}
    assert stats.avg_attempts_for_failed_jobs == 3.0
    (failure,) = stats.recent_failures
    assert (failure.job_id, failure.type, failure.error, failure.attempts) == (
        failed.job_id,
        "process_data",
        "SMTP connection timeout",
        3,
    )
    assert failure.HasField("failed_at")


def test_cancel_processing_job_requests_cancellation(stub: JobServiceStub, db: str) -> None:
    job = stub.SubmitJob(pb.SubmitJobRequest(type="long")).job
    sql(db, "UPDATE jobs SET status = 'PROCESSING', attempts = 1 WHERE job_id = %s", job.job_id)
    reply = stub.CancelJob(pb.CancelJobRequest(job_id=job.job_id))
    assert reply.status == pb.Job.PROCESSING
    assert reply.cancel_requested


def test_retry_brings_a_failed_job_back_fresh(stub: JobServiceStub, db: str) -> None:
    job = stub.SubmitJob(pb.SubmitJobRequest(type="flaky")).job
    sql(
        db,
        "UPDATE jobs SET status = 'FAILED', attempts = 3, error_message = 'boom', finished_at = now() "
        "WHERE job_id = %s",
        job.job_id,
    )
    retried = stub.RetryJob(pb.RetryJobRequest(job_id=job.job_id))
    assert retried.status == pb.Job.READY
    assert retried.attempts == 0
    assert not retried.HasField("error_message")
    assert not retried.HasField("finished_at")


def test_watch_sends_each_change_until_finished(stub: JobServiceStub, db: str) -> None:
    job = stub.SubmitJob(pb.SubmitJobRequest(type="watched")).job
    stream = stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), timeout=20)
    first = next(stream)
    assert first.status == pb.Job.READY
    sql(db, "UPDATE jobs SET status = 'PROCESSING', updated_at = now() WHERE job_id = %s", job.job_id)
    assert next(stream).status == pb.Job.PROCESSING
    sql(
        db,
        "UPDATE jobs SET status = 'COMPLETED', finished_at = now(), updated_at = now(), result = '{\"ok\": true}' "
        "WHERE job_id = %s",
        job.job_id,
    )
    last = next(stream)
    assert last.status == pb.Job.COMPLETED
    assert dict(last.result) == {"ok": True}
    with pytest.raises(StopIteration):
        next(stream)


def test_watch_of_unknown_job_is_not_found(stub: JobServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        next(stub.WatchJob(pb.WatchJobRequest(job_id=999999), timeout=5))
    assert code_of(caught.value) == grpc.StatusCode.NOT_FOUND


def test_health_and_reflection(api: ApiServer, grpc_channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(grpc_channel)
    for service in ("", "jobs.v1.JobService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(grpc_channel)
    replies = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert "jobs.v1.JobService" in names


def test_a_conflict_fails_only_its_own_submit_when_submits_share_a_transaction(stub: JobServiceStub, db: str) -> None:
    stub.SubmitJob(pb.SubmitJobRequest(type="pay", payload=struct(amount=1), idempotency_key="taken"))
    barrier = threading.Barrier(40)

    def submit(i: int) -> str:
        if i % 2:
            request = pb.SubmitJobRequest(type="pay", payload=struct(amount=2), idempotency_key="taken")
        else:
            request = pb.SubmitJobRequest(type="pay", payload=struct(amount=i))
        barrier.wait()
        try:
            return "created" if stub.SubmitJob(request).created else "replayed"
        except grpc.RpcError as error:
            return code_of(error).name

    with ThreadPoolExecutor(40) as pool:
        outcomes = list(pool.map(submit, range(40)))
    assert outcomes.count("created") == 20
    assert outcomes.count("ALREADY_EXISTS") == 20
    assert sql(db, "SELECT count(*) FROM jobs") == [(21,)]
