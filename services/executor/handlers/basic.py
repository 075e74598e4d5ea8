"""``echo``, ``sleep`` and ``fail``: for smoke tests, demos and benchmarks."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from services.executor.context import JobContext
from services.executor.errors import PermanentError
from services.executor.registry import handler

__all__ = ["DeliberateFailure", "echo", "fail", "number_field", "sleep"]

MAX_SLEEP_SECONDS = 7 * 24 * 3600.0
DEFAULT_FAIL_MESSAGE = "failed on purpose"
PROGRESS_STEP_SECONDS = 1.0


class DeliberateFailure(Exception):
    """What the ``fail`` handler raises."""


@handler("echo", inline=True)
def echo(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Return the payload as the result (inline: microseconds, no task or thread needed)."""
    return payload


@handler("sleep")
async def sleep(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Sleep ``seconds`` (default 1), reporting progress about once a second. A cancel or timeout cancels
    the sleep at once (the task is cancelled)."""
    seconds = number_field(payload, "seconds", default=1.0, minimum=0.0, maximum=MAX_SLEEP_SECONDS)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not ctx.cancelled and (left := end - loop.time()) > 0:
        ctx.report_progress(100 * (seconds - left) / seconds, f"{seconds - left:.0f} of {seconds:g} s")
        await asyncio.sleep(min(left, PROGRESS_STEP_SECONDS))
    return {"slept_seconds": seconds}


@handler("fail", inline=True)
def fail(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Raise ``message`` on the first ``times`` attempts (all of them when absent), then succeed."""
    message = payload.get("message", DEFAULT_FAIL_MESSAGE)
    if not isinstance(message, str):
        raise PermanentError("payload.message must be a string")
    times = payload.get("times")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 0):
        raise PermanentError("payload.times must be a whole number >= 0")
    if times is None or ctx.attempt <= times:
        if payload.get("permanent") is True:
            raise PermanentError(message)
        raise DeliberateFailure(message)
    return {"succeeded_on_attempt": ctx.attempt}


def number_field(payload: dict[str, Any], name: str, *, default: float, minimum: float, maximum: float) -> float:
    """payload[name] as a finite number within bounds, or PermanentError naming the field."""
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PermanentError(f"payload.{name} must be a number, got {value!r}")
    if not minimum <= value <= maximum:
        raise PermanentError(f"payload.{name} must be between {minimum:g} and {maximum:g}, got {value}")
    return float(value)
