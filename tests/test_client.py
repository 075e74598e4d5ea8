"""The client library (jobclient) against real processes: every call of JobClient and AsyncJobClient,
the exception mapping, token auth over TLS, and the retry rule (a retried submit never makes a second
job), shown through a proxy that loses the api's answer after the commit and through a SIGKILLed api."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import psycopg2
import pytest
from pydantic import BaseModel, Field

from jobclient import (
    NO_RETRY,
    AlreadyExists,
    AsyncJobClient,
    DeadlineExceeded,
    ExecutorInfo,
    FailedPrecondition,
    IdempotencyConflict,
    InvalidArgument,
    Job,
    JobClient,
    JobClientError,
    JobDefinition,
    JobFilter,
    JobSpec,
    JobStatus,
    NotFound,
    RetryPolicy,
    Unauthenticated,
    Unavailable,
    WaitTimeout,
)
from shared.proto.jobs.v1 import job_service_pb2 as pb
from tests.support.api import TEST_TOKEN, ApiServer
from tests.support.processes import FAST_WORKER_ENV, IDLE, ROOT, ServiceProcess, free_port, wait_until

FAST = FAST_WORKER_ENV


@pytest.fixture
def client(api: ApiServer, workers: None) -> Iterator[JobClient]:
    with JobClient(f"127.0.0.1:{api.grpc_port}") as running:
        yield running


def rows(database_url: str, where: str = "TRUE", params: tuple[Any, ...] = ()) -> int:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM jobs WHERE {where}", params)
        (count,) = cur.fetchone() or (0,)
    conn.close()
    return int(count)


# -- every call ----------------------------------------------------------------------------------------------


def test_submit_get_wait_round_trip_with_plain_types(client: JobClient) -> None:
    payload = {"n": 1, "big": 2**40, "ratio": 0.5, "tags": ["a", 2], "nested": {"ok": True, "none": None}}
    job = client.submit("echo", payload)
    assert isinstance(job, Job) and job.created is True
    assert job.type == "echo" and job.payload == payload
    assert job.status in (JobStatus.READY, JobStatus.PROCESSING, JobStatus.COMPLETED)
    assert job.status == job.status.value  # a str enum
    uuid.UUID(job.idempotency_key or "")  # generated, since none was given
    assert job.created_at is not None and job.created_at.tzinfo is not None

    done = client.wait(job.job_id, timeout=20)
    assert done.status is JobStatus.COMPLETED and done.finished
    assert done.result == payload  # integral numbers come back as ints
    assert isinstance(done.result["big"], int)
    assert done.attempts == 1 and done.finished_at is not None
    assert client.get(job.job_id) == done
    as_dict = done.to_dict()
    assert as_dict["status"] == "COMPLETED" and as_dict["finished_at"].endswith("Z")
    assert "created" not in as_dict


def test_submit_options_and_cancel_of_a_waiting_job(client: JobClient) -> None:
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    job = client.submit(
        IDLE, {"x": 1}, priority=2, run_at=later, max_attempts=7, timeout=timedelta(seconds=90), idempotency_key="k1"
    )
    assert job.status is JobStatus.PENDING
    assert (job.priority, job.max_attempts, job.timeout_seconds, job.idempotency_key) == (2, 7, 90, "k1")
    assert job.scheduled_at is not None and abs((job.scheduled_at - later).total_seconds()) < 0.001
    naive = client.submit(IDLE, run_at=later.replace(tzinfo=None), timeout=1.5)  # naive means UTC
    assert naive.run_at == job.run_at and naive.timeout_seconds == 2 and naive.payload == {}

    cancelled = client.cancel(job.job_id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.finished_at is not None
    with pytest.raises(FailedPrecondition, match="can no longer be cancelled"):
        client.cancel(job.job_id)


def test_idempotency_key_returns_the_same_job_or_conflicts(client: JobClient, db: str) -> None:
    first = client.submit(IDLE, {"to": "a@example.com"}, idempotency_key="signup-a")
    again = client.submit(IDLE, {"to": "a@example.com"}, idempotency_key="signup-a")
    assert (first.created, again.created) == (True, False)
    assert again == first  # `created` takes no part in equality
    with pytest.raises(IdempotencyConflict) as caught:
        client.submit(IDLE, {"to": "b@example.com"}, idempotency_key="signup-a")
    assert isinstance(caught.value, AlreadyExists)
    assert caught.value.code == "ALREADY_EXISTS" and caught.value.reason == "IDEMPOTENCY_KEY_REUSED"
    assert rows(db) == 1


def test_submit_many_with_specs_and_dicts(client: JobClient, db: str) -> None:
    jobs = client.submit_many(
        [
            JobSpec("echo", {"i": 0}),
            {"type": "echo", "payload": {"i": 1}, "priority": 1},
            JobSpec(IDLE, idempotency_key="batch-key"),
        ]
    )
    assert [job.type for job in jobs] == ["echo", "echo", IDLE]
    assert [job.created for job in jobs] == [True, True, True]
    assert jobs[1].priority == 1 and jobs[2].idempotency_key == "batch-key"
    assert all(job.idempotency_key for job in jobs)
    assert [client.wait(job.job_id, 20).result for job in jobs[:2]] == [{"i": 0}, {"i": 1}]

    with pytest.raises(InvalidArgument) as caught:
        client.submit_many([JobSpec(IDLE), JobSpec(IDLE, priority=11)])
    assert caught.value.field == "jobs[1].priority"
    assert rows(db) == 3  # all or nothing: the valid first job of the refused call was not stored
    with pytest.raises(TypeError, match="unknown keys"):
        client.submit_many([{"type": IDLE, "colour": "red"}])


def test_list_iterates_over_every_page_with_filters(client: JobClient) -> None:
    idle = [client.submit(IDLE, {"i": i}).job_id for i in range(7)]
    other = [client.submit("client.other", {"i": i}).job_id for i in range(3)]
    everything = list(client.list(page_size=2))
    assert [job.job_id for job in everything] == sorted(idle + other, reverse=True)
    assert [job.job_id for job in client.list(type=IDLE, page_size=3)] == sorted(idle, reverse=True)
    client.cancel(idle[0])
    client.cancel(other[0])
    assert [job.job_id for job in client.list(status="cancelled")] == [other[0], idle[0]]
    assert [job.job_id for job in client.list(status=JobStatus.CANCELLED, type=IDLE)] == [idle[0]]
    assert len(list(itertools.islice(client.list(page_size=1), 3))) == 3
    with pytest.raises(InvalidArgument) as caught:
        list(client.list(status="SLEEPING"))
    assert caught.value.field == "status" and caught.value.code is None  # refused before any call


def test_search_filters_attempts_and_bulk_actions(client: JobClient) -> None:
    keyed = [client.submit(IDLE, {"i": i}, concurrency_key="tenant-1").job_id for i in range(4)]
    unique = client.submit(IDLE, unique_key="nightly").job_id
    others = [client.submit("client.other", {"i": i}).job_id for i in range(3)]
    fair = [client.submit("client.fair", {"i": i}, fairness_key="tenant-a").job_id for i in range(3)]
    client.submit("client.fair", fairness_key="tenant-b")
    assert [job.job_id for job in client.list(concurrency_key="tenant-1", page_size=3)] == keyed[::-1]
    assert [job.job_id for job in client.list(fairness_key="tenant-a", page_size=2)] == fair[::-1]
    assert [job.fairness_key for job in client.list(type="client.fair", fairness_key="tenant-b")] == ["tenant-b"]
    with pytest.raises(InvalidArgument) as caught:
        list(client.list(fairness_key="tenant\x00a"))
    assert caught.value.field == "fairness_key" and caught.value.code == "INVALID_ARGUMENT"
    assert [job.job_id for job in client.list(unique_key="nightly")] == [unique]
    (first,) = client.list(idempotency_key=client.get(others[0]).idempotency_key)
    assert first.job_id == others[0]
    created = client.get(keyed[2]).created_at
    assert created is not None
    newest = [job.job_id for job in client.list(type=IDLE, created_after=created.replace(tzinfo=None))]
    assert set(newest) >= {keyed[2], keyed[3], unique} and keyed[0] not in newest
    assert list(client.list(created_before=created - timedelta(days=1))) == []

    # Bulk: count first, then act; a repeat finds nothing left; an empty filter is refused before any call.
    tenant = JobFilter(type=IDLE, concurrency_key="tenant-1", status="ready")
    assert client.cancel_jobs(tenant, validate_only=True) == 4
    assert client.cancel_jobs(tenant) == 4 and client.cancel_jobs(tenant) == 0
    assert {client.get(job_id).status for job_id in keyed} == {JobStatus.CANCELLED}
    assert client.get(unique).status is JobStatus.READY
    assert client.retry_jobs(JobFilter(type=IDLE)) == 4
    one_tenant = JobFilter(fairness_key="tenant-a")
    assert client.cancel_jobs(one_tenant, validate_only=True) == 3
    assert client.cancel_jobs(one_tenant) == 3
    assert {job.status for job in client.list(type="client.fair")} == {JobStatus.CANCELLED, JobStatus.READY}
    assert [job.job_id for job in client.list(status="cancelled", type="client.fair")] == fair[::-1]
    with pytest.raises(InvalidArgument) as caught:
        client.cancel_jobs(JobFilter())
    assert caught.value.field == "filter" and caught.value.code is None
    with pytest.raises(InvalidArgument) as caught:
        client.retry_jobs(JobFilter(status=JobStatus.READY))
    assert caught.value.field == "filter.status" and caught.value.code == "INVALID_ARGUMENT"

    # Attempts: a job that failed once, then completed.
    flaky = client.submit("fail", {"times": 1, "message": "first try fails"}, max_attempts=2)
    assert client.wait(flaky.job_id, timeout=20).status is JobStatus.COMPLETED
    failed, completed = client.attempts(flaky.job_id)
    assert (failed.attempt, failed.outcome, completed.attempt, completed.outcome) == (1, "FAILED", 2, "COMPLETED")
    assert failed.traceback is not None and ", in fail\n" in failed.traceback
    assert failed.error_type is not None and failed.error_type.endswith("DeliberateFailure")
    assert failed.duration is not None and failed.duration >= timedelta(0) and failed.executor_id
    assert completed.to_dict()["outcome"] == "COMPLETED" and completed.traceback is None
    with pytest.raises(NotFound):
        client.attempts(987654321)


def test_retry_of_a_failed_job_and_cancel_of_a_running_one(client: JobClient) -> None:
    failing = client.submit("fail", {"message": "boom"}, max_attempts=1)
    failed = client.wait(failing.job_id, timeout=20)
    assert failed.status is JobStatus.FAILED and "boom" in (failed.error_message or "")
    requeued = client.retry(failing.job_id)
    assert requeued.status is JobStatus.READY and requeued.attempts == 0 and requeued.error_message is None
    assert client.wait(failing.job_id, timeout=20).status is JobStatus.FAILED
    with pytest.raises(FailedPrecondition):
        client.retry(client.submit(IDLE).job_id)

    running = client.submit("sleep", {"seconds": 30})
    wait_until(lambda: client.get(running.job_id).status is JobStatus.PROCESSING, 10, what="the job to start")
    asked = client.cancel(running.job_id)
    assert asked.status is JobStatus.PROCESSING and asked.cancel_requested
    assert client.wait(running.job_id, timeout=20).status is JobStatus.CANCELLED


def test_stats(client: JobClient) -> None:
    for _ in range(3):
        client.submit(IDLE)
    failed = client.wait(client.submit("fail", {"message": "nope"}, max_attempts=1).job_id, 20)
    stats = client.stats()
    assert set(stats.status_breakdown) == {status.value for status in JobStatus}
    assert stats.status_breakdown["READY"] == 3 and stats.status_breakdown["FAILED"] == 1
    assert stats.type_breakdown == {IDLE: 3, "fail": 1}
    assert stats.total == 4 and stats.avg_attempts_for_failed_jobs == 1.0
    (failure,) = stats.recent_failures
    assert (failure.job_id, failure.type, failure.attempts) == (failed.job_id, "fail", 1)
    assert "nope" in failure.error and failure.failed_at is not None
    assert stats.to_dict()["recent_failures"][0]["job_id"] == failed.job_id


def test_watch_yields_each_change_once_until_the_job_finishes(client: JobClient) -> None:
    job = client.submit("examples.countdown", {"start": 4, "interval": 0.2})
    updates = list(client.watch(job.job_id, timeout=30))
    statuses = [update.status for update in updates]
    assert statuses[-1] is JobStatus.COMPLETED and JobStatus.PROCESSING in statuses
    assert updates[-1].result == {"counted_from": 4, "attempt": 1}
    versions = [(u.status, u.updated_at, u.attempts) for u in updates]
    assert len(versions) == len(set(versions))  # no repeats
    assert [u.updated_at for u in updates] == sorted(u.updated_at for u in updates if u.updated_at)

    # A retried job: its failed first attempt waits in PENDING (backing off) before it runs again.
    flaky = client.submit("examples.flaky", {"failures": 1}, max_attempts=3)
    retried = list(client.watch(flaky.job_id, timeout=30))
    assert retried[-1].status is JobStatus.COMPLETED and retried[-1].attempts == 2
    assert retried[-1].result == {"succeeded_on_attempt": 2}

    # Breaking out of a watch early is fine (the stream is cancelled).
    idle = client.submit(IDLE)
    first = next(iter(client.watch(idle.job_id)))
    assert first.status is JobStatus.READY


def test_wait_gives_up_with_wait_timeout(client: JobClient) -> None:
    job = client.submit(IDLE)
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        client.wait(job.job_id, timeout=0.5)
    assert 0.4 < time.monotonic() - started < 5
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.job is not None and caught.value.job.status is JobStatus.READY


# -- errors --------------------------------------------------------------------------------------------------


def test_exceptions_carry_code_reason_and_field(client: JobClient) -> None:
    with pytest.raises(InvalidArgument) as bad_priority:
        client.submit(IDLE, priority=11)
    error = bad_priority.value
    assert (error.code, error.reason, error.field) == ("INVALID_ARGUMENT", "INVALID_ARGUMENT", "priority")
    assert "between 1 and 10" in error.description and isinstance(error, ValueError)
    assert error.attempts == 1  # not retried

    with pytest.raises(InvalidArgument) as bad_type:
        client.submit("Not A Type")
    assert bad_type.value.field == "type"
    with pytest.raises(InvalidArgument) as bad_attempts:
        client.submit(IDLE, max_attempts=0)
    assert bad_attempts.value.field == "max_attempts"

    # Found before any call is made: no code.
    with pytest.raises(
        InvalidArgument, match=r"must be a dict .*, a pydantic model or a dataclass, got list"
    ) as not_a_dict:
        client.submit(IDLE, [1, 2])
    assert (not_a_dict.value.field, not_a_dict.value.code) == ("payload", None)
    with pytest.raises(InvalidArgument) as unencodable:
        client.submit(IDLE, {"when": datetime.now()})
    assert unencodable.value.field == "payload"

    for call in (client.get, client.cancel, client.retry):
        with pytest.raises(NotFound) as missing:
            call(987654)
        assert missing.value.code == "NOT_FOUND" and missing.value.reason == "JOB_NOT_FOUND"
        assert isinstance(missing.value, (JobClientError, LookupError))
    with pytest.raises(NotFound):
        client.wait(987654, timeout=5)


def test_unreachable_server_is_unavailable_after_bounded_retries() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=0.1)
    started = time.monotonic()
    with JobClient(f"127.0.0.1:{free_port()}", retry=policy) as client, pytest.raises(Unavailable) as caught:
        client.stats()
    assert caught.value.attempts == 3 and time.monotonic() - started < 5
    assert isinstance(caught.value, ConnectionError) and caught.value.retryable


def test_retry_backoff_grows_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.2, max_backoff=1.0, multiplier=2.0)
    for retry, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (9, 1.0)]:
        delays = [policy.backoff(retry) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 100  # jittered
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_payloads_may_be_models_or_dataclasses_and_types_declared_with_them(client: JobClient, api: ApiServer) -> None:
    """The producer's side of typed handlers: a model or a dataclass goes out as its JSON (by its aliases);
    a JobDefinition's payload type is checked before any call. examples/producer.py uses both."""

    class Address(BaseModel):
        street: str
        zip_code: str = Field(alias="zip")

    class Signup(BaseModel):
        email: str
        at: datetime
        address: Address

    @dataclasses.dataclass
    class Ping:
        host: str
        count: int = 1

    signup = Signup(email="a@example.com", at=datetime(2030, 1, 2, tzinfo=timezone.utc),
                    address=Address(street="Main St", zip="12345"))  # fmt: skip
    job = client.submit("echo", signup)
    expected = {
        "email": "a@example.com",
        "at": "2030-01-02T00:00:00Z",
        "address": {"street": "Main St", "zip": "12345"},
    }
    assert job.payload == expected
    assert client.wait(job.job_id, timeout=20).result == expected

    pinging = JobDefinition("echo", Ping)
    [many] = client.submit_many([JobSpec(pinging, Ping("db"))])
    assert many.type == "echo" and many.payload == {"host": "db", "count": 1}
    assert client.submit(pinging, {"host": "as a dict"}).payload == {"host": "as a dict"}
    with pytest.raises(InvalidArgument, match=r"payload: job type 'echo' takes a Ping, got Signup") as caught:
        client.submit(pinging, signup)
    assert caught.value.field == "payload"

    async def scenario() -> Job:
        async with AsyncJobClient(f"127.0.0.1:{api.grpc_port}") as async_client:
            return await async_client.submit(pinging, Ping("cache", 3))

    assert asyncio.run(scenario()).payload == {"host": "cache", "count": 3}


# -- asyncio -------------------------------------------------------------------------------------------------


def test_async_client_does_every_call(api: ApiServer, workers: None, db: str) -> None:
    async def scenario() -> None:
        async with AsyncJobClient(f"127.0.0.1:{api.grpc_port}") as client:
            job = await client.submit("examples.word_count", {"text": "a b a"})
            assert job.created
            done = await client.wait(job.job_id, timeout=20)
            assert done.status is JobStatus.COMPLETED and done.result == {
                "words": 3,
                "lines": 1,
                "top": [["a", 2], ["b", 1]],
            }
            assert await client.get(job.job_id) == done
            batch = await client.submit_many([JobSpec(IDLE, {"i": i}) for i in range(3)])
            listed = [j.job_id async for j in client.list(type=IDLE, page_size=2)]
            assert listed == sorted((j.job_id for j in batch), reverse=True)
            assert (await client.cancel(batch[0].job_id)).status is JobStatus.CANCELLED
            assert (await client.retry(batch[0].job_id)).status is JobStatus.READY
            stats = await client.stats()
            assert stats.type_breakdown == {IDLE: 3, "examples.word_count": 1}

            failing = await client.submit("fail", {"message": "async boom"}, max_attempts=2)
            seen = [update.status async for update in client.watch(failing.job_id, timeout=20)]
            assert seen[-1] is JobStatus.FAILED and len(seen) >= 2
            with pytest.raises(WaitTimeout):
                await client.wait(batch[1].job_id, timeout=0.3)
            with pytest.raises(NotFound):
                await client.get(987654)
            with pytest.raises(InvalidArgument) as caught:
                await client.submit(IDLE, priority=0)
            assert (caught.value.field, caught.value.reason) == ("priority", "INVALID_ARGUMENT")
            with pytest.raises(IdempotencyConflict):
                await client.submit(IDLE, {"other": True}, idempotency_key=batch[2].idempotency_key)

            # Search, attempts and the bulk actions.
            listed = [j.job_id async for j in client.list(idempotency_key=batch[1].idempotency_key)]
            assert listed == [batch[1].job_id]
            attempts = await client.attempts(failing.job_id)
            assert [a.outcome for a in attempts] == ["FAILED", "FAILED"] and "async boom" in str(attempts[1].traceback)
            idle = JobFilter(type=IDLE, status=JobStatus.READY)
            assert await client.cancel_jobs(idle, validate_only=True) == 3
            assert await client.cancel_jobs(idle) == 3
            assert await client.retry_jobs(JobFilter(type=IDLE, status=JobStatus.CANCELLED)) == 3

    asyncio.run(scenario())
    assert rows(db) == 5


# -- token auth over TLS -------------------------------------------------------------------------------------


def test_token_auth_over_tls(secure_api: tuple[ApiServer, Path], db: str) -> None:
    api, cert = secure_api
    target = f"localhost:{api.grpc_port}"
    with JobClient(target, root_certificates=cert) as anonymous, pytest.raises(Unauthenticated) as caught:
        anonymous.submit(IDLE)
    assert caught.value.code == "UNAUTHENTICATED" and caught.value.attempts == 1
    with JobClient(target, root_certificates=cert, token="wrong-token-wrong-token") as wrong:
        with pytest.raises(Unauthenticated):
            wrong.stats()
        with pytest.raises(Unauthenticated):
            list(wrong.watch(1))
    with JobClient(target, root_certificates=cert.read_bytes(), token=TEST_TOKEN) as client:
        job = client.submit(IDLE, {"secure": True})
        assert client.get(job.job_id).payload == {"secure": True}
        assert [j.job_id for j in client.list()] == [job.job_id]
    # Plain text to a TLS port never gets an answer.
    with JobClient(target, token=TEST_TOKEN, retry=NO_RETRY) as plaintext, pytest.raises(Unavailable):
        plaintext.stats()

    async def over_asyncio() -> Job:
        async with AsyncJobClient(target, root_certificates=cert, token=TEST_TOKEN) as client:
            return await client.get(job.job_id)

    assert asyncio.run(over_asyncio()).job_id == job.job_id
    assert rows(db) == 1


# -- the retry rule: a retried submit never makes a second job -----------------------------------------------


class LossyProxy:
    """A gRPC proxy in front of the real api that forwards every call, and for the methods told to, forwards
    the call (so the api commits it) and then answers UNAVAILABLE instead of the api's reply, or answers
    late: what a client sees when the api dies, or the network drops, after the commit."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.requests: list[tuple[str, bytes]] = []
        self.lose_replies: dict[str, int] = {}  # method name -> how many replies to replace by UNAVAILABLE
        self.delay_replies: dict[str, tuple[int, float]] = {}  # method name -> (how many, seconds)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="lossy-proxy", daemon=True)

    def __enter__(self) -> LossyProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def calls(self, method: str) -> list[bytes]:
        return [body for name, body in self.requests if name == method]

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        channel = grpc.aio.insecure_channel(self.upstream)
        server = grpc.aio.server()
        proxy = self

        class Forward(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
                method = details.method
                if method.endswith("/WatchJob"):
                    return grpc.unary_stream_rpc_method_handler(proxy._stream(channel, method))
                return grpc.unary_unary_rpc_method_handler(proxy._unary(channel, method))

        server.add_generic_rpc_handlers((Forward(),))
        server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._ready.set()
        await self._stop.wait()
        await server.stop(0)
        await channel.close()

    def _unary(self, channel: grpc.aio.Channel, method: str) -> Any:
        name = method.rsplit("/", 1)[-1]

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.requests.append((name, request))
            metadata = tuple((k, v) for k, v in context.invocation_metadata() or () if k == "authorization")
            try:
                reply: bytes = await channel.unary_unary(method)(request, metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "", tuple(exc.trailing_metadata() or ()))
                raise
            if self.lose_replies.get(name, 0) > 0:
                self.lose_replies[name] -= 1
                await context.abort(grpc.StatusCode.UNAVAILABLE, "proxy: the api's answer was lost")
            count, seconds = self.delay_replies.get(name, (0, 0.0))
            if count > 0:
                self.delay_replies[name] = (count - 1, seconds)
                await asyncio.sleep(seconds)
            return reply

        return forward

    def _stream(self, channel: grpc.aio.Channel, method: str) -> Any:
        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> Any:
            self.requests.append(("WatchJob", request))
            async for message in channel.unary_stream(method)(request):
                yield message

        return forward


def submitted_keys(bodies: list[bytes]) -> list[str]:
    return [pb.SubmitJobRequest.FromString(body).idempotency_key for body in bodies]


def test_a_submit_whose_answer_is_lost_is_retried_into_the_same_job(api: ApiServer, db: str) -> None:
    with LossyProxy(f"127.0.0.1:{api.grpc_port}") as proxy:
        target = f"127.0.0.1:{proxy.port}"
        # Without retries the caller sees the failure although the job was stored: the danger.
        proxy.lose_replies["SubmitJob"] = 1
        with JobClient(target, retry=NO_RETRY) as bare, pytest.raises(Unavailable):
            bare.submit(IDLE, {"attempt": "bare"})
        assert rows(db) == 1

        # With the client's retries: the api commits the first try, its answer is lost, the retry carries
        # the same generated key and gets the same job back. Exactly one row.
        proxy.lose_replies["SubmitJob"] = 1
        with JobClient(target) as client:
            job = client.submit(IDLE, {"attempt": "retried"})
        first, second = submitted_keys(proxy.calls("SubmitJob"))[-2:]
        assert first == second == job.idempotency_key
        assert job.created is False  # the retry found the job its first try had made
        assert rows(db, "payload->>'attempt' = 'retried'") == 1
        assert rows(db) == 2

        # The asyncio client does the same.
        async def over_asyncio() -> Job:
            async with AsyncJobClient(target) as client:
                return await client.submit(IDLE, {"attempt": "async"})

        proxy.lose_replies["SubmitJob"] = 1
        async_job = asyncio.run(over_asyncio())
        assert (
            async_job.created is False
            and submitted_keys(proxy.calls("SubmitJob"))[-2:] == [async_job.idempotency_key] * 2
        )
        assert rows(db, "payload->>'attempt' = 'async'") == 1


def test_a_submit_answered_too_late_is_retried_into_the_same_job(api: ApiServer, db: str) -> None:
    with LossyProxy(f"127.0.0.1:{api.grpc_port}") as proxy:
        proxy.delay_replies["SubmitJob"] = (1, 1.5)
        with JobClient(f"127.0.0.1:{proxy.port}", deadline=0.5) as client:
            job = client.submit(IDLE, {"slow": True})
        keys = submitted_keys(proxy.calls("SubmitJob"))
        assert len(keys) == 2 and set(keys) == {job.idempotency_key}
        assert job.created is False and rows(db) == 1

        # Retrying is bounded: with every answer too late the caller gets DeadlineExceeded.
        proxy.delay_replies["GetJob"] = (10, 1.0)
        policy = RetryPolicy(max_attempts=2, initial_backoff=0.05)
        impatient = JobClient(f"127.0.0.1:{proxy.port}", deadline=0.3, retry=policy)
        with impatient, pytest.raises(DeadlineExceeded) as caught:
            impatient.get(job.job_id)
        assert caught.value.attempts == 2 and isinstance(caught.value, TimeoutError)


def test_batch_cancel_and_retry_whose_answers_are_lost(api: ApiServer, db: str) -> None:
    with LossyProxy(f"127.0.0.1:{api.grpc_port}") as proxy, JobClient(f"127.0.0.1:{proxy.port}") as client:
        proxy.lose_replies["SubmitJobs"] = 1
        jobs = client.submit_many([JobSpec(IDLE, {"i": i}) for i in range(3)])
        assert len(proxy.calls("SubmitJobs")) == 2
        assert [job.created for job in jobs] == [False, False, False] and rows(db) == 3

        # The cancel was done by the first try; the retry's FAILED_PRECONDITION is recognised as our own.
        proxy.lose_replies["CancelJob"] = 1
        assert client.cancel(jobs[0].job_id).status is JobStatus.CANCELLED
        assert len(proxy.calls("CancelJob")) == 2
        proxy.lose_replies["RetryJob"] = 1
        assert client.retry(jobs[0].job_id).status is JobStatus.READY
        assert len(proxy.calls("RetryJob")) == 2
        # A cancel of a job cancelled by someone else is still refused.
        client.cancel(jobs[1].job_id)
        with pytest.raises(FailedPrecondition):
            client.cancel(jobs[1].job_id)


def test_submit_and_watch_ride_out_an_api_killed_and_restarted(database_url: str, db: str, tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = {"DATABASE_URL": database_url, "GRPC_PORT": str(grpc_port), "HTTP_PORT": str(http_port)}

    def start_api() -> ServiceProcess:
        return ServiceProcess("services.api", env, log_dir=tmp_path).start().wait_for_port(grpc_port)

    first = start_api()
    replacement: list[ServiceProcess] = []
    patient = RetryPolicy(max_attempts=1000, initial_backoff=0.1, max_backoff=0.3, max_elapsed=60)
    try:
        with JobClient(f"127.0.0.1:{grpc_port}", retry=patient) as client:
            watched = client.submit(IDLE, {"watched": True})
            updates: list[Job] = []
            watcher = threading.Thread(target=lambda: updates.extend(client.watch(watched.job_id, timeout=90)))
            watcher.start()
            wait_until(lambda: len(updates) == 1, 10, what="the first watch update")

            first.kill()  # SIGKILL: no goodbye to the client
            restart = threading.Timer(0.5, lambda: replacement.append(start_api()))
            restart.start()
            started = time.monotonic()
            job = client.submit(IDLE, {"during": "outage"}, idempotency_key="outage-1")
            restart.join()
            assert time.monotonic() - started >= 0.5  # it kept trying until the new api answered
            assert job.created and rows(db, "idempotency_key = 'outage-1'") == 1
            assert client.submit(IDLE, {"during": "outage"}, idempotency_key="outage-1").created is False

            client.cancel(watched.job_id)
            watcher.join(60)
            assert not watcher.is_alive()
            assert [u.status for u in updates] == [JobStatus.READY, JobStatus.CANCELLED]
    finally:
        first.stop()
        for process in replacement:
            process.stop()


def test_examples_producer_runs_against_the_stack(api: ApiServer, workers: None, db: str) -> None:
    """examples/producer.py submits through the client; an executor runs them with examples/handlers.py."""
    command = [sys.executable, "-m", "examples.producer", "--server", f"127.0.0.1:{api.grpc_port}", "--run-id", "t1"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": COMPLETED after") == 5
    assert "examples.flaky: COMPLETED after 2 attempt(s)" in result.stdout
    assert "'words': 9" in result.stdout
    # Again with the same run id: the batch is submitted idempotently, the same three jobs come back.
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("(already there)") == 3
    assert rows(db, "type = 'examples.word_count'") == 3


def test_schedule_calls_round_trip_and_a_due_schedule_submits_its_job(api: ApiServer, db: str) -> None:
    scheduler = ServiceProcess("services.scheduler", {"DATABASE_URL": db, "METRICS_PORT": "0"}).start()
    try:
        with JobClient(f"127.0.0.1:{api.grpc_port}") as client:
            # Six fields: a leading seconds field, so the test sees an occurrence within a second.
            schedule = client.create_schedule(
                "every-second", "* * * * * *", JobSpec(IDLE, {"from": "schedule"}, priority=3, unique_key="tick")
            )
            assert schedule.name == "every-second" and schedule.time_zone == "UTC"
            assert schedule.job.type == IDLE and schedule.job.priority == 3 and schedule.job.unique_key == "tick"
            assert schedule.next_run_at is not None and schedule.created_at is not None
            assert client.list_schedules() == [client.get_schedule("every-second")]
            with pytest.raises(AlreadyExists):
                client.create_schedule("every-second", "* * * * *", {"type": IDLE})
            with pytest.raises(InvalidArgument) as bad:
                client.create_schedule("bad", "* * * * *", {"type": IDLE, "run_at": datetime.now(timezone.utc)})
            assert bad.value.field == "schedule.job.scheduled_at"

            wait_until(lambda: client.get_schedule("every-second").last_job_id is not None, timeout=20)
            job = client.get(client.get_schedule("every-second").last_job_id or 0)
            assert job.schedule == "every-second" and job.payload == {"from": "schedule"}
            assert job.unique_key == "tick" and job.priority == 3
            client.delete_schedule("every-second")
            assert client.list_schedules() == []
            with pytest.raises(NotFound):
                client.delete_schedule("every-second")
    finally:
        scheduler.stop()


def test_limit_calls_round_trip(client: JobClient) -> None:
    limits = client.set_limits("send_email", rate_limit=100, rate_period_seconds=60)
    assert (limits.type, limits.rate_limit, limits.rate_period_seconds, limits.max_running) == (
        "send_email",
        100,
        60,
        None,
    )
    assert limits.updated_at is not None
    replaced = client.set_limits("send_email", max_running=2)
    assert (replaced.rate_limit, replaced.max_running) == (None, 2)
    assert client.list_limits() == [replaced]
    with pytest.raises(InvalidArgument) as bad:
        client.set_limits("send_email", max_running_per_key=0)
    assert bad.value.field == "max_running_per_key"
    client.delete_limits("send_email")
    assert client.list_limits() == []
    with pytest.raises(NotFound):
        client.delete_limits("send_email")


def test_dependencies_unique_keys_and_callbacks_through_the_client(client: JobClient) -> None:
    extract, transform, load = client.submit_many(
        [
            JobSpec("echo", {"step": "extract"}),
            JobSpec("echo", {"step": "transform"}, depends_on_index=[0]),
            # The receiver does not exist (.invalid never resolves, RFC 6761): the delivery keeps failing, and
            # is retried, which is all this test needs to see.
            JobSpec("echo", {"step": "load"}, depends_on_index=[1], callback_url="http://hooks.invalid/jobs"),
        ]
    )
    assert transform.depends_on == (extract.job_id,) and load.depends_on == (transform.job_id,)
    assert load.status is JobStatus.WAITING and load.pending_dependencies == 1
    assert load.callback is not None and load.callback.state == "WAITING"
    assert load.callback.url == "http://hooks.invalid/jobs"
    done = client.wait(load.job_id, timeout=20)
    assert done.status is JobStatus.COMPLETED and done.pending_dependencies == 0
    assert extract.job_id in [j.job_id for j in client.list(status="COMPLETED")]
    # attempts counts from the lease, last_error from the failed attempt's outcome: wait for the outcome.
    wait_until(lambda: getattr(client.get(load.job_id).callback, "last_error", None) is not None, timeout=20)
    callback = client.get(load.job_id).callback
    assert callback is not None and callback.state == "SENDING" and callback.delivery_job_id
    assert callback.last_error  # the name does not resolve: retried with backoff
    assert client.get(callback.delivery_job_id).type == "jobs.callback"

    first = client.submit(IDLE, {"n": 1}, unique_key="sync-42")
    again = client.submit(IDLE, {"n": 2}, unique_key="sync-42")
    assert again.job_id == first.job_id and first.created and again.created is False
    client.cancel(first.job_id)
    fresh = client.submit(IDLE, {"n": 3}, unique_key="sync-42")
    assert fresh.created and fresh.job_id != first.job_id

    failed = client.submit("fail", {"message": "no"}, max_attempts=1)
    waiting = client.submit(IDLE, depends_on=[failed.job_id])
    assert client.wait(waiting.job_id, timeout=20).status is JobStatus.CANCELLED
    assert client.get(waiting.job_id).error_message == f"dependency {failed.job_id} FAILED"
    with pytest.raises(InvalidArgument) as missing:
        client.submit(IDLE, depends_on=[10**12])
    assert missing.value.field == "depends_on[0]"


def test_operator_calls_round_trip_sync_and_async(client: JobClient, api: ApiServer, workers: None) -> None:
    paused = client.pause_type("ops.report")
    assert paused.type == "ops.report" and paused.paused and paused.paused_at is not None and paused.counts == {}
    client.submit("ops.report", {"n": 1})
    client.set_limits("ops.report", max_running=2)
    (listed,) = [item for item in client.list_types(page_size=1) if item.type == "ops.report"]
    assert listed.counts == {"READY": 1} and listed.limits is not None and listed.limits.max_running == 2
    assert not client.resume_type("ops.report").paused
    with pytest.raises(InvalidArgument) as bad:
        client.pause_type("Bad Type")
    assert bad.value.field == "type"

    def workers_executor() -> ExecutorInfo | None:
        return next((e for e in client.list_executors() if e.concurrency == 8 and "echo" in e.types), None)

    wait_until(lambda: workers_executor() is not None, 30, what="the workers fixture's executor to register")
    executor = workers_executor()
    assert executor is not None and executor.last_seen_at is not None and executor.host

    client.create_schedule("ops-yearly", "0 0 1 1 *", {"type": IDLE, "payload": {"v": 1}})
    assert client.pause_schedule("ops-yearly").paused
    job = client.trigger_schedule("ops-yearly")
    assert job.schedule == "ops-yearly" and job.payload == {"v": 1} and job.status is JobStatus.READY
    assert client.get_schedule("ops-yearly").last_job_id == job.job_id
    updated = client.update_schedule("ops-yearly", cron="@daily", job={"type": IDLE, "payload": {"v": 2}})
    assert updated.cron == "@daily" and updated.job.payload == {"v": 2} and updated.paused
    assert not client.resume_schedule("ops-yearly").paused
    with pytest.raises(InvalidArgument) as nothing:
        client.update_schedule("ops-yearly")
    assert nothing.value.field == "update_mask"
    with pytest.raises(NotFound):
        client.trigger_schedule("no-such-schedule")

    async def scenario() -> None:
        async with AsyncJobClient(f"127.0.0.1:{api.grpc_port}") as aio:
            assert (await aio.pause_type("ops.async")).paused
            assert "ops.async" in [item.type async for item in aio.list_types()]
            assert not (await aio.resume_type("ops.async")).paused
            assert executor.pid in [item.pid for item in await aio.list_executors()]
            assert (await aio.pause_schedule("ops-yearly")).paused
            assert (await aio.trigger_schedule("ops-yearly")).schedule == "ops-yearly"
            assert (await aio.update_schedule("ops-yearly", time_zone="Europe/Paris")).time_zone == "Europe/Paris"
            assert not (await aio.resume_schedule("ops-yearly")).paused
            assert [s.name for s in await aio.list_schedules()] == ["ops-yearly"]

    asyncio.run(scenario())
