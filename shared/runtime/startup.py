"""Start-up: wait until the database answers and its schema is the one this code needs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shared.errors import DatabaseUnavailable
from shared.runtime.backoff import Backoff
from shared.runtime.loops import sleep_or_stop

__all__ = ["wait_for_schema"]

logger = logging.getLogger("shared.runtime")


async def wait_for_schema(check_schema: Callable[[], Awaitable[object]], stop: asyncio.Event) -> bool:
    """Run ``check_schema`` (the gateway's) until the database answers; True once the schema is current,
    False when ``stop`` came first. SchemaOutOfDate propagates: the process must refuse to run."""
    backoff = Backoff(first=0.2, cap=5.0)
    while not stop.is_set():
        try:
            await check_schema()
            return True
        except DatabaseUnavailable as error:
            delay = backoff.next()
            logger.warning("waiting for the database: %s; retrying in %.1f s", error.message, delay)
            await sleep_or_stop(stop, delay)
    return False
