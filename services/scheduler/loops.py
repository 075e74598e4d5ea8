"""The one shape every scheduler duty runs in: until a stop signal, one bounded pass, then wait.

A duty's ``run_once`` does one bounded batch and says how long to wait before the next; the loop times
it, and turns a database outage into a logged, counted back-off instead of a crash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from typing import Protocol

from services.scheduler import metrics
from shared.errors import DatabaseUnavailable

__all__ = ["Backoff", "Duty", "StopSignal", "run_duty"]

log = logging.getLogger(__name__)

BACKOFF_INITIAL_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 5.0


class StopSignal:
    """A threading.Event that can also be waited on with ``select`` (``fileno()`` turns readable on set)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._read_fd, self._write_fd = os.pipe()

    def set(self) -> None:
        with self._lock:
            if not self._event.is_set():
                self._event.set()
                os.write(self._write_fd, b"x")

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds; True when the signal was set."""
        return self._event.wait(timeout)

    def fileno(self) -> int:
        return self._read_fd

    def close(self) -> None:
        """Free the pipe; only once nothing waits on it any more."""
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Backoff:
    """Growing, jittered delays for retrying while the database is away; reset once it answers."""

    def __init__(self, initial: float = BACKOFF_INITIAL_SECONDS, maximum: float = BACKOFF_MAX_SECONDS) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next_delay(self) -> float:
        """The delay to wait now; each call doubles the next one, up to the maximum."""
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        # Jitter keeps several schedulers from reconnecting in lock-step after a restart.
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = self.initial


class Duty(Protocol):
    """One of the scheduler's jobs, run by ``run_duty`` on the leader only."""

    name: str

    def run_once(self) -> float:
        """Do one bounded batch; return the seconds to wait before the next (0: go again at once)."""
        ...

    def wait(self, stop: StopSignal, seconds: float) -> None:
        """Wait ``seconds`` or until ``stop`` is set; a duty may wake earlier for its own reasons."""
        ...

    def close(self) -> None:
        """Let go of what the duty holds between passes (a listening connection); called once it stops."""
        ...


def run_duty(duty: Duty, stop: StopSignal) -> None:
    """Run ``duty`` until ``stop`` is set. Never raises: errors are logged, counted and backed off."""
    backoff = Backoff()
    log.info("%s started", duty.name)
    try:
        _run_until_stopped(duty, stop, backoff)
    finally:
        duty.close()
    log.info("%s stopped", duty.name)


def _run_until_stopped(duty: Duty, stop: StopSignal, backoff: Backoff) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            delay = duty.run_once()
        except DatabaseUnavailable as error:
            delay = backoff.next_delay()
            metrics.DATABASE_ERRORS.labels(duty.name).inc()
            log.warning("%s: %s; retrying in %.1f s", duty.name, error, delay)
        except Exception:
            delay = backoff.next_delay()
            metrics.LOOP_ERRORS.labels(duty.name).inc()
            log.exception("%s failed unexpectedly; retrying in %.1f s", duty.name, delay)
        else:
            backoff.reset()
        metrics.LOOP_DURATION.labels(duty.name).observe(time.monotonic() - started)
        if delay > 0 and not stop.is_set():
            duty.wait(stop, delay)
