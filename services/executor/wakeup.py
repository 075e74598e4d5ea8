"""Wake-up: LISTEN jobs_ready on a connection of its own, so the lease loop runs within milliseconds of
a job becoming READY. The event loop watches the connection's socket (no thread). A lost connection is
reopened with backoff; meanwhile, and in poll-only mode, the lease loop's fallback poll keeps working."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from services.executor.loops import DatabaseCalls, RetryBackoff, sleep_or_stop
from shared.database.queue import JobQueue, ReadyListener
from shared.errors import DatabaseUnavailable

__all__ = ["Wakeup"]

logger = logging.getLogger(__name__)


class Wakeup:
    """Calls ``on_ready`` for each batch of jobs_ready notifications, until stopped."""

    def __init__(self, queue: JobQueue, database: DatabaseCalls, on_ready: Callable[[], None]) -> None:
        self._queue = queue
        self._database = database
        self._on_ready = on_ready
        self._stopped = asyncio.Event()
        self._lost = asyncio.Event()

    def stop(self) -> None:
        self._stopped.set()
        self._lost.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = RetryBackoff(first=0.1, cap=5.0)
        while not self._stopped.is_set():
            try:
                listener = await self._database.call("listen_jobs_ready", self._queue.listen_jobs_ready)
            except Exception as error:
                if not isinstance(error, DatabaseUnavailable):
                    logger.exception("cannot LISTEN jobs_ready; retrying")
                await sleep_or_stop(self._stopped, backoff.next())
                continue
            backoff.reset()
            self._lost.clear()
            # Jobs may have become READY while nobody was listening.
            self._on_ready()
            descriptor = listener.fileno()
            loop.add_reader(descriptor, self._readable, listener)
            try:
                await self._lost.wait()
            finally:
                loop.remove_reader(descriptor)
                listener.close()
            if not self._stopped.is_set():
                logger.warning("LISTEN connection lost; reconnecting (the fallback poll covers the gap)")

    def _readable(self, listener: ReadyListener) -> None:
        try:
            if listener.drain():
                self._on_ready()
        except DatabaseUnavailable:
            self._lost.set()
        except Exception:
            logger.exception("reading notifications failed; reconnecting")
            self._lost.set()
