"""SIGTERM and SIGINT for an asyncio process: the first asks for a graceful stop, a second for a quick one."""

from __future__ import annotations

import asyncio
import logging
import signal

__all__ = ["Shutdown"]

logger = logging.getLogger("shared.runtime")


class Shutdown:
    """``requested`` is set by the first SIGTERM or SIGINT (or ``request()``), ``forced`` by the second:
    a process drains on the first and stops waiting for what still runs on the second."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()

    def install(self) -> Shutdown:
        """Handle SIGTERM and SIGINT on the running event loop from now on."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._received, signum)
        return self

    def request(self) -> None:
        """Stop as a signal would: gracefully the first time, quickly the next."""
        if self.requested.is_set():
            self.forced.set()
        self.requested.set()

    def _received(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            logger.warning("received %s again; not waiting for what still runs", name)
        else:
            logger.info("received %s; stopping", name)
        self.request()
