"""The executor registry as operators see it: GET /executors lists the executors that run, with their
pids and what they do; one stopped with SIGTERM leaves the list at once, one killed with SIGKILL within
its lease period (when its record expires)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from shared.jobs import JobStatus
from tests.support.api import ApiServer
from tests.support.executors import Executor, submit, wait_for_jobs
from tests.support.processes import wait_until

LEASE_SECONDS = 3


def listed(api: ApiServer) -> dict[int, dict[str, Any]]:
    """The live executors by pid."""
    reply = api.get("/executors")
    assert reply.status == 200, reply.body
    return {item["pid"]: item for item in reply.body["executors"]}


def test_get_executors_lists_running_executors_and_drops_stopped_and_killed_ones(
    api: ApiServer, engine: Engine, start_executor: Callable[..., Executor]
) -> None:
    env = {"EXECUTOR_LEASE_SECONDS": str(LEASE_SECONDS)}
    first = start_executor("--concurrency", "2", "--types", "tests.record", env=env)
    second = start_executor("--concurrency", "3", "--types", "tests.record,tests.sleep_sync", env=env)
    third = start_executor("--concurrency", "4", "--types", "tests.async_sleep_then_echo", env=env)

    executors = listed(api)
    # Other tests of this worker may have killed executors whose records have not expired yet.
    assert {first.pid, second.pid, third.pid} <= set(executors)
    record = executors[third.pid]
    assert record["host"] == socket.gethostname() and record["concurrency"] == 4
    assert record["types"] == ["tests.async_sleep_then_echo"] and record["version"]
    assert record["executor_id"].startswith(f"{socket.gethostname()}-{third.pid}-")
    assert record["started_at"] <= record["last_seen_at"] and record["running"] == 0
    assert executors[second.pid]["types"] == ["tests.record", "tests.sleep_sync"]

    # A running job shows in the record at the next heartbeat (every second with a 3 s lease).
    (job_id,) = submit(engine, "tests.async_sleep_then_echo", {"seconds": 4})
    wait_until(lambda: listed(api)[third.pid]["running"] == 1, 20, what="the third executor to report its job")

    # SIGTERM: the record is gone once the process exited.
    first.stop()
    assert first.pid not in listed(api)
    # SIGKILL: the record stays until it expires, one lease period after the last heartbeat.
    second.kill()
    wait_until(lambda: second.pid not in listed(api), 30, what="the killed executor's record to expire")
    assert third.pid in listed(api)
    wait_for_jobs(engine, [job_id], {JobStatus.COMPLETED}, timeout=30)
    # The attempt names its executor by the registry's id.
    (attempt,) = api.get(f"/jobs/{job_id}/attempts").body["attempts"]
    assert attempt["executor_id"] == record["executor_id"]
