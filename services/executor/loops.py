"""What every loop of the executor shares: stop-aware sleeping, retry backoff, and database calls
that run off the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from services.executor import metrics
from shared.errors import DatabaseUnavailable

__all__ = ["DatabaseCalls", "RetryBackoff", "sleep_or_stop", "supervise"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

# How often a loop that keeps failing the same way says so again.
REPEAT_LOG_SECONDS = 30.0


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; return True (early) when ``stop`` is set."""
    if stop.is_set():
        return True
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, seconds))
    return stop.is_set()


class RetryBackoff:
    """Delays between retries of a failing database call: doubling from ``first`` to ``cap``, jittered
    so that many executors coming back after an outage do not all reconnect in the same instant."""

    def __init__(self, first: float = 0.05, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._next = self.first


class DatabaseCalls:
    """Runs blocking database-layer calls in a small thread pool, so the event loop (and the handlers on
    it) never waits for PostgreSQL; keeps database_up and database_errors_total, and logs an outage once
    when it starts, every REPEAT_LOG_SECONDS while it lasts, and when it ends."""

    def __init__(self, threads: int) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="db")
        self._down_since: float | None = None
        self._last_logged = 0.0

    async def call(self, operation: str, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a database thread; errors propagate after being counted."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._pool, function, *args)
        except DatabaseUnavailable as error:
            metrics.DATABASE_ERRORS.labels(operation).inc()
            metrics.DATABASE_UP.set(0)
            now = time.monotonic()
            if self._down_since is None:
                self._down_since = self._last_logged = now
                logger.warning("database unavailable (%s): %s; retrying", operation, error.message)
            elif now - self._last_logged >= REPEAT_LOG_SECONDS:
                self._last_logged = now
                logger.warning(
                    "database still unavailable after %.0f s (%s): %s", now - self._down_since, operation, error.message
                )
            raise
        except Exception:
            metrics.DATABASE_ERRORS.labels(operation).inc()
            raise
        if self._down_since is not None:
            logger.info("database available again after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None
        metrics.DATABASE_UP.set(1)
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def supervise(name: str, run: Callable[[], Awaitable[None]], restart_delay: float = 1.0) -> None:
    """Run a loop; should a bug make it raise, log it and start it again rather than run on without it."""
    while True:
        try:
            await run()
            return
        except Exception:
            logger.exception("the %s loop crashed; restarting it in %.0f s", name, restart_delay)
            await asyncio.sleep(restart_delay)
