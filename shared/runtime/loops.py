"""The loops every process runs, in one shape: until a stop event, one bounded pass, then wait.

- ``Duty`` + ``run_duty``: a pass that says how long to wait before the next (the scheduler's duties);
  a database outage is a logged back-off, any other error a logged, counted back-off, never a crash.
- ``supervise``: runs a loop written as its own coroutine (the executor's lease, complete, heartbeat
  loops); should it crash, it is logged, counted, and started again after a back-off.
- ``Pulse``: marks a loop's passes (``with pulse:``), so a loop stuck inside one is visible: the
  ``loop_busy_seconds{loop}`` gauge, and a warning from ``watch_loops`` once it exceeds STUCK_AFTER_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.errors import DatabaseUnavailable
from shared.runtime.backoff import Backoff
from shared.runtime.metrics import LOOP_DURATION, LOOP_ERRORS, LOOP_GAUGES

__all__ = ["STUCK_AFTER_SECONDS", "Duty", "Pulse", "run_duty", "sleep_or_stop", "supervise", "watch_loops"]

logger = logging.getLogger("shared.runtime")

# A pass running longer than this is reported as stuck (every pass is one bounded batch; statements time
# out after 30 s).
STUCK_AFTER_SECONDS = 60.0
# How often watch_loops looks.
WATCH_INTERVAL_SECONDS = 10.0


async def sleep_or_stop(stop: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> bool:
    """Sleep up to ``seconds``, less when ``wake`` (if given) or ``stop`` is set; True when stopped."""
    if stop.is_set():
        return True
    if wake is None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, seconds))
        return stop.is_set()
    if wake.is_set():
        return False
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return stop.is_set()


class Pulse:
    """Where one loop is: inside a pass (since when) or waiting. ``with pulse:`` around each pass."""

    __slots__ = ("_duration", "busy_since", "name", "reported")

    def __init__(self, name: str) -> None:
        self.name = name
        self.busy_since: float | None = None
        self.reported = False
        self._duration = LOOP_DURATION.labels(name)
        _PULSES[name] = self

    def __enter__(self) -> Pulse:
        self.busy_since = time.monotonic()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        started, self.busy_since = self.busy_since, None
        if started is not None:
            self._duration.observe(time.monotonic() - started)
        if self.reported:
            self.reported = False
            logger.info("the %s loop is moving again", self.name)

    def busy_for(self, now: float) -> float:
        """Seconds the current pass has run; 0 while waiting."""
        started = self.busy_since
        return 0.0 if started is None else now - started


# Every loop of this process, by name (a restarted loop replaces its old pulse).
_PULSES: dict[str, Pulse] = {}


class _BusyCollector(Collector):
    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(name, text, labels=["loop"]) for name, text in LOOP_GAUGES.items()]

    def collect(self) -> Iterable[Metric]:
        now = time.monotonic()
        ((name, text),) = LOOP_GAUGES.items()
        family = GaugeMetricFamily(name, text, labels=["loop"])
        for pulse in list(_PULSES.values()):
            family.add_metric([pulse.name], pulse.busy_for(now))
        yield family


REGISTRY.register(_BusyCollector())


async def watch_loops(stop: asyncio.Event, stuck_after: float = STUCK_AFTER_SECONDS) -> None:
    """Until ``stop``: warn once about each loop whose pass has run longer than ``stuck_after``."""
    while not await sleep_or_stop(stop, min(WATCH_INTERVAL_SECONDS, stuck_after)):
        now = time.monotonic()
        for pulse in list(_PULSES.values()):
            busy = pulse.busy_for(now)
            if busy > stuck_after and not pulse.reported:
                pulse.reported = True
                logger.warning("the %s loop has been in one pass for %.0f s: stuck?", pulse.name, busy)


async def supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a loop until it returns; should a bug make it raise, log and count that, back off, and start
    it again rather than run on without it."""
    backoff = Backoff(first=1.0, cap=30.0)
    while True:
        try:
            await run()
            return
        except Exception:
            delay = backoff.next()
            LOOP_ERRORS.labels(name).inc()
            logger.exception("the %s loop crashed; restarting it in %.1f s", name, delay)
            await asyncio.sleep(delay)


class Duty:
    """One periodic job of a process: ``run_once`` does one bounded pass and says how long to wait.

    ``wake``, when a duty has one, cuts the wait short (a notification that something changed).
    """

    name: str = "duty"
    wake: asyncio.Event | None = None

    async def run_once(self) -> float:
        """Do one bounded batch; return the seconds to wait before the next (0: go again at once)."""
        raise NotImplementedError


async def run_duty(duty: Duty, stop: asyncio.Event) -> None:
    """Run ``duty`` until ``stop`` is set. Never raises: errors are logged, counted and backed off."""
    pulse = Pulse(duty.name)
    backoff = Backoff()
    logger.info("%s started", duty.name)
    while not stop.is_set():
        try:
            with pulse:
                delay = await duty.run_once()
        except DatabaseUnavailable as error:
            delay = backoff.next()  # the gateway logs the outage and counts the failed operation
            logger.debug("%s: %s; retrying in %.1f s", duty.name, error.message, delay)
        except Exception:
            delay = backoff.next()
            LOOP_ERRORS.labels(duty.name).inc()
            logger.exception("%s failed unexpectedly; retrying in %.1f s", duty.name, delay)
        else:
            backoff.reset()
        if delay > 0:
            await sleep_or_stop(stop, delay, duty.wake)
        else:
            await asyncio.sleep(0)  # even "go again at once" lets the rest of the process run first
    logger.info("%s stopped", duty.name)
