"""Attempt history against real processes: each attempt with its executor, times, outcome and, for a
failure, the error and the traceback that names the handler; LOST for an executor killed mid-attempt;
numbering that carries on across RetryJob; NOT_FOUND for an unknown job; pruned with its job."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine

from shared.jobs import AttemptOutcome, JobStatus
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer
from tests.support.executors import Executor, submit, wait_for_jobs
from tests.support.gateway import gateway
from tests.support.processes import wait_until
from tests.support.scheduler import Scheduler

HANDLERS = {
    "EXECUTOR_HANDLERS": "tests.handlers_for_tests,examples.handlers",
    "RETRY_BACKOFF_BASE_SECONDS": "0.1",
    "RETRY_BACKOFF_CAP_SECONDS": "0.2",
    "EXECUTOR_LEASE_SECONDS": "2",
    "EXECUTOR_HEARTBEAT_INTERVAL_SECONDS": "0.5",
}


@pytest.fixture
def scheduler(db: str, tmp_path: Path) -> Iterator[Scheduler]:
    """The scheduler: promotes retries that backed off, and rescues expired leases."""
    process = Scheduler(db, tmp_path)
    process.start()
    try:
        yield process.wait_until_leader()
    finally:
        process.stop()


def attempts(api: ApiServer, job_id: int) -> list[dict[str, Any]]:
    reply = api.get(f"/jobs/{job_id}/attempts")
    assert reply.status == 200, reply.body
    found: list[dict[str, Any]] = reply.body["attempts"]
    return found


def wait_finished(api: ApiServer, job_id: int, timeout: float = 30) -> dict[str, Any]:
    def finished() -> bool:
        return api.get(f"/jobs/{job_id}").body["status"] in {"COMPLETED", "FAILED", "CANCELLED"}

    wait_until(finished, timeout, 0.05, f"job {job_id} to finish")
    job: dict[str, Any] = api.get(f"/jobs/{job_id}").body
    return job


@pytest.mark.parametrize(
    ("job_type", "payload", "function", "error_type", "message"),
    [
        # Inline (run on the event loop), a thread, and an async task: the three ways a handler runs.
        ("fail", {"times": 2, "message": "upstream said 502"}, "fail", "DeliberateFailure", "upstream said 502"),
        ("examples.flaky", {"failures": 2}, "flaky", "ConnectionError", "simulated outage on attempt"),
        ("tests.flaky_async", {"failures": 2}, "_refuse", "ValueError", "refused on attempt"),
    ],
)
def test_a_handler_failing_twice_then_succeeding_shows_three_attempts(
    api: ApiServer,
    scheduler: Scheduler,
    start_executor: Callable[..., Executor],
    stub: JobServiceStub,
    job_type: str,
    payload: dict[str, Any],
    function: str,
    error_type: str,
    message: str,
) -> None:
    start_executor(env=HANDLERS)
    created = api.post("/jobs", {"type": job_type, "payload": payload, "max_attempts": 3})
    assert created.status == 200, created.body
    job_id = created.body["job_id"]
    job = wait_finished(api, job_id)
    assert job["status"] == "COMPLETED" and job["attempts"] == 3

    history = attempts(api, job_id)
    assert [a["attempt"] for a in history] == [1, 2, 3]
    assert [a["outcome"] for a in history] == ["FAILED", "FAILED", "COMPLETED"]
    executors = {a["executor_id"] for a in history}
    assert len(executors) == 1 and executors.pop()
    times = [datetime.fromisoformat(a[name]) for a in history for name in ("started_at", "finished_at")]
    assert times == sorted(times)  # each attempt ends before the next one starts
    for failed in history[:2]:
        assert failed["error_type"].endswith(error_type)
        assert message in failed["error_message"]
        traceback = failed["traceback"]
        # The handler's own frame, the raise, the exception; not the executor's frames that called it.
        assert traceback.startswith("Traceback (most recent call last):")
        assert f", in {function}\n" in traceback and "runner.py" not in traceback
        assert error_type in traceback.rstrip().splitlines()[-1]
    assert (history[2]["error_type"], history[2]["error_message"], history[2]["traceback"]) == (None, None, None)

    # gRPC answers the same.
    reply = stub.ListJobAttempts(pb.ListJobAttemptsRequest(job_id=job_id))
    assert [(a.attempt, pb.JobAttempt.Outcome.Name(a.outcome)) for a in reply.attempts] == [
        (1, "FAILED"),
        (2, "FAILED"),
        (3, "COMPLETED"),
    ]
    assert reply.attempts[0].traceback == history[0]["traceback"]
    assert not reply.attempts[2].HasField("traceback")


def test_numbering_carries_on_after_retry_job(
    api: ApiServer, scheduler: Scheduler, start_executor: Callable[..., Executor]
) -> None:
    start_executor(env=HANDLERS)
    job_id = api.post("/jobs", {"type": "fail", "payload": {"times": 1}, "max_attempts": 1}).body["job_id"]
    assert wait_finished(api, job_id)["status"] == "FAILED"
    assert [(a["attempt"], a["outcome"]) for a in attempts(api, job_id)] == [(1, "FAILED")]
    assert api.post(f"/jobs/{job_id}:retry").status == 200
    # The handler fails again (its context's attempt starts from 1 again, as the job's attempts do).
    job = wait_finished(api, job_id)
    assert (job["status"], job["attempts"]) == ("FAILED", 1)
    assert [(a["attempt"], a["outcome"]) for a in attempts(api, job_id)] == [(1, "FAILED"), (2, "FAILED")]


def test_a_sigkilled_executors_attempt_shows_lost(
    api: ApiServer, engine: Engine, scheduler: Scheduler, start_executor: Callable[..., Executor]
) -> None:
    victim = start_executor(env=HANDLERS)
    (job_id,) = submit(engine, "tests.slow_first_attempt", {"seconds": 60})

    def running() -> bool:
        return [a["outcome"] for a in attempts(api, job_id)] == ["RUNNING"]

    wait_until(running, 20, 0.05, "the first attempt to run")
    (first,) = attempts(api, job_id)
    assert first["attempt"] == 1 and first["executor_id"] and first["finished_at"] is None
    victim.kill()

    # The scheduler takes the job back (its executor died, or its 2 s lease expired) and records the attempt LOST.
    wait_until(lambda: attempts(api, job_id)[0]["outcome"] == "LOST", 20, 0.1, "the attempt to be LOST")
    (lost,) = attempts(api, job_id)
    assert (lost["attempt"], lost["executor_id"], lost["started_at"]) == (1, first["executor_id"], first["started_at"])
    assert datetime.fromisoformat(lost["finished_at"]) > datetime.fromisoformat(lost["started_at"])
    assert "heartbeat" in lost["error_message"]
    assert lost["traceback"] is None

    survivor = start_executor(env=HANDLERS)
    (job,) = wait_for_jobs(engine, [job_id], timeout=30).values()
    assert job.status is JobStatus.COMPLETED
    history = gateway(engine).list_job_attempts(job_id)
    assert [(a.attempt, a.outcome) for a in history] == [(1, AttemptOutcome.LOST), (2, AttemptOutcome.COMPLETED)]
    assert history[1].executor_id != first["executor_id"] and history[1].executor_id in survivor.output()


def test_a_timed_out_attempt_and_a_cancelled_one(
    api: ApiServer, engine: Engine, scheduler: Scheduler, start_executor: Callable[..., Executor]
) -> None:
    start_executor(env=HANDLERS)
    timed = api.post("/jobs", {"type": "sleep", "payload": {"seconds": 30}, "timeout_seconds": 1, "max_attempts": 1})
    cancelled = api.post("/jobs", {"type": "sleep", "payload": {"seconds": 30}})
    wait_until(lambda: attempts(api, cancelled.body["job_id"]) != [], 20, 0.05, "the sleep to start")
    assert api.post(f"/jobs/{cancelled.body['job_id']}:cancel").status == 200
    wait_for_jobs(engine, [timed.body["job_id"], cancelled.body["job_id"]], timeout=30)
    (timed_out,) = attempts(api, timed.body["job_id"])
    assert (timed_out["outcome"], timed_out["error_message"]) == ("TIMED_OUT", "timed out after 1 s")
    (stopped,) = attempts(api, cancelled.body["job_id"])
    assert stopped["outcome"] == "CANCELLED"


def test_unknown_job_is_not_found_and_a_job_that_never_ran_has_no_attempts(
    api: ApiServer, stub: JobServiceStub
) -> None:
    missing = api.get("/jobs/987654321/attempts")
    assert missing.status == 404 and missing.body["status"] == "NOT_FOUND"
    with pytest.raises(grpc.RpcError) as raised:
        stub.ListJobAttempts(pb.ListJobAttemptsRequest(job_id=987654321))
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    job_id = api.post("/jobs", {"type": "echo", "scheduled_at": later}).body["job_id"]
    assert api.get(f"/jobs/{job_id}/attempts").body == {"attempts": []}
