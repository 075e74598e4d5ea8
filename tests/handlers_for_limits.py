"""Handlers the limits tests load with ``EXECUTOR_HANDLERS=tests.handlers_for_limits``.

Each sleeps ``seconds`` and returns when it started and finished (time.time(), one clock for every
process on the machine): the running intervals of all executors can then be overlapped exactly. A
handler's interval lies inside its job's PROCESSING interval, so overlaps of handlers never exceed
overlaps of PROCESSING jobs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from services.executor import JobContext, handler


async def _timed(payload: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    await asyncio.sleep(float(payload.get("seconds", 0)))
    return {"started": started, "finished": time.time()}


@handler("tests.limited")
async def limited(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The type the tests put limits on."""
    return await _timed(payload)


@handler("tests.unlimited")
async def unlimited(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """A type without limits, running next to the limited one."""
    return await _timed(payload)
