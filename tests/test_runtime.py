"""shared.runtime, the loops every process runs on: back-off, duties that survive their bugs, loops that
restart, stuck loops made visible, one LISTEN that reconnects, and the stop requests of signals."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from shared.database import Database
from shared.errors import DatabaseUnavailable
from shared.runtime import Backoff, Duty, Listener, Pulse, Shutdown, run_duty, supervise, watch_loops
from tests.support.gateway import on_test_loop
from tests.support.job_rows import execute
from tests.support.processes import wait_until


def test_backoff_doubles_up_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(first=0.1, cap=0.8)
    delays = [backoff.next() for _ in range(6)]
    for delay, nominal in zip(delays, [0.1, 0.2, 0.4, 0.8, 0.8, 0.8], strict=True):
        assert nominal / 2 <= delay <= nominal
    backoff.reset()
    assert backoff.next() <= 0.1


def _errors(loop: str) -> float:
    return REGISTRY.get_sample_value("loop_errors_total", {"loop": loop}) or 0


class _Flaky(Duty):
    """Fails its first passes (a bug, then an outage), then counts passes until told to stop."""

    name = "flaky_duty"

    def __init__(self) -> None:
        self.passes = 0
        self.done = asyncio.Event()

    async def run_once(self) -> float:
        self.passes += 1
        if self.passes == 1:
            raise KeyError("a bug in the duty")
        if self.passes == 2:
            raise DatabaseUnavailable("database unavailable: connection refused")
        if self.passes >= 4:
            self.done.set()
        return 0.0


def test_a_duty_that_raises_is_logged_counted_and_runs_on(caplog: pytest.LogCaptureFixture) -> None:
    before = _errors("flaky_duty")

    async def scenario() -> int:
        duty, stop = _Flaky(), asyncio.Event()
        task = asyncio.create_task(run_duty(duty, stop))
        await asyncio.wait_for(duty.done.wait(), 30)
        stop.set()
        await asyncio.wait_for(task, 30)
        return duty.passes

    assert on_test_loop(scenario()) >= 4
    assert _errors("flaky_duty") == before + 1, "a bug counts; an outage is the gateway's to count"
    (crash,) = [record for record in caplog.records if "flaky_duty failed unexpectedly" in record.message]
    assert crash.exc_info is not None and crash.exc_info[0] is KeyError


def test_a_crashed_loop_is_restarted(caplog: pytest.LogCaptureFixture) -> None:
    before = _errors("crashing_loop")
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("a bug in the loop")

    on_test_loop(supervise("crashing_loop", loop))
    assert runs == 2
    assert _errors("crashing_loop") == before + 1
    assert any("the crashing_loop loop crashed; restarting it" in record.message for record in caplog.records)


def test_a_stuck_pass_shows_in_the_busy_gauge_and_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "shared.runtime")
    release = asyncio.Event()
    busy: list[float] = []

    async def scenario() -> None:
        stop = asyncio.Event()
        watch = asyncio.create_task(watch_loops(stop, stuck_after=0.2))
        pulse = Pulse("stuck_loop")

        async def stuck_pass() -> None:
            with pulse:
                await release.wait()

        task = asyncio.create_task(stuck_pass())
        while not any("stuck?" in record.message for record in caplog.records):
            await asyncio.sleep(0.05)
        busy.append(REGISTRY.get_sample_value("loop_busy_seconds", {"loop": "stuck_loop"}) or 0)
        release.set()
        await task
        busy.append(REGISTRY.get_sample_value("loop_busy_seconds", {"loop": "stuck_loop"}) or 0)
        stop.set()
        await watch

    on_test_loop(scenario())
    assert busy[0] > 0.2 and busy[1] == 0
    assert any("the stuck_loop loop has been in one pass for" in record.message for record in caplog.records)
    assert any("the stuck_loop loop is moving again" in record.message for record in caplog.records)


def test_the_listener_hears_notifications_and_comes_back_after_its_session_is_killed(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "shared.runtime")
    db = Database("", "tests", pool_size=2, engine=engine)
    heard: list[int] = []
    stop = asyncio.Event()
    listener = Listener("jobs_scheduled", db.listen_jobs_scheduled, lambda: heard.append(1))
    task = asyncio.run_coroutine_threadsafe(listener.run(stop), _test_loop())
    try:
        wait_until(lambda: len(heard) == 1, 30, what="the listener to start (it is notified once on start)")
        execute(engine, "SELECT pg_notify('jobs_scheduled', '')")
        wait_until(lambda: len(heard) == 2, 30, what="the notification")
        execute(
            engine,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE '%LISTEN jobs_scheduled%' AND pid <> pg_backend_pid()",
        )
        wait_until(lambda: len(heard) == 3, 30, what="listening again (notified once more on start)")
        execute(engine, "SELECT pg_notify('jobs_scheduled', '')")
        wait_until(lambda: len(heard) == 4, 30, what="a notification on the new session")
    finally:
        _test_loop().call_soon_threadsafe(stop.set)
        task.result(30)
        db.close()
    messages = [record.message for record in caplog.records]
    assert messages.count("listening on jobs_scheduled") == 2
    assert any(message.startswith("jobs_scheduled: LISTEN connection lost") for message in messages), messages


def test_a_second_stop_request_forces() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        shutdown = Shutdown()
        shutdown.request()
        first = (shutdown.requested.is_set(), shutdown.forced.is_set())
        shutdown.request()
        return (*first, shutdown.forced.is_set())

    assert on_test_loop(scenario()) == (True, False, True)


def _test_loop() -> asyncio.AbstractEventLoop:
    """The event loop on_test_loop runs coroutines on."""

    async def running() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    loop: asyncio.AbstractEventLoop = on_test_loop(running())
    return loop
