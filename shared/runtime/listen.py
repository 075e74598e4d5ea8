"""One LISTEN kept open for as long as a process needs it: the event loop watches the session's socket
(no thread), and a session that breaks (an error, the FATAL notice of a server ending it) is reopened
with back-off. Whoever relies on it keeps a fallback poll for the gaps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shared.database import Listening
from shared.errors import DatabaseUnavailable
from shared.runtime.backoff import Backoff
from shared.runtime.loops import sleep_or_stop

__all__ = ["Listener"]

logger = logging.getLogger("shared.runtime")


class Listener:
    """Calls ``on_notify`` for each batch of notifications on ``channel``, until stopped.

    ``listen`` opens the session (a gateway operation such as ``db.listen_jobs_ready``). ``on_notify`` is
    also called each time listening starts: something may have happened while nobody listened.
    """

    def __init__(self, channel: str, listen: Callable[[], Awaitable[Listening]], on_notify: Callable[[], None]) -> None:
        self.channel = channel
        self._listen = listen
        self._on_notify = on_notify

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(first=0.1, cap=5.0)
        while not stop.is_set():
            try:
                listening = await self._listen()
            except DatabaseUnavailable:  # the gateway logs the outage and counts the failure
                await sleep_or_stop(stop, backoff.next())
                continue
            backoff.reset()
            logger.info("listening on %s", self.channel)
            lost: asyncio.Future[object] = loop.create_future()
            descriptor = listening.fileno()
            loop.add_reader(descriptor, self._readable, listening, lost)
            try:
                self._on_notify()
                stopped: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
                await asyncio.wait([lost, stopped], return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
            finally:
                loop.remove_reader(descriptor)
                listening.close()
            if lost.done():
                logger.warning("%s: %s; reconnecting", self.channel, lost.result())

    def _readable(self, listening: Listening, lost: asyncio.Future[object]) -> None:
        if lost.done():
            return
        try:
            if listening.drain():
                self._on_notify()
        except DatabaseUnavailable as error:
            lost.set_result(error.message)
        except Exception as error:
            logger.exception("reading %s notifications failed; reconnecting", self.channel)
            lost.set_result(f"LISTEN connection lost: {type(error).__name__}")
