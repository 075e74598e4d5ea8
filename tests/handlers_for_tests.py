"""Handlers the executor tests load with ``--handlers tests.handlers_for_tests``.

Job types are prefixed ``tests.`` so they cannot collide with built-ins.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from services.executor import JobContext, handler


@handler("tests.record")
async def record(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """After ``seconds`` (default 0), append ``job_id attempt`` to a file of this process under RECORD_DIR:
    proof of every execution."""
    await asyncio.sleep(float(payload.get("seconds", 0)))
    directory = os.environ["RECORD_DIR"]
    line = f"{ctx.job_id} {ctx.attempt}\n".encode()
    # O_APPEND: one write per execution, whole lines even if several processes shared a file.
    descriptor = os.open(os.path.join(directory, f"{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)
    return {"job_id": ctx.job_id}


@handler("tests.block_sync")
def block_sync(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """A sync handler that ignores cancellation: sleeps ``seconds`` no matter what."""
    time.sleep(float(payload.get("seconds", 5)))
    return {"done": True}


@handler("tests.cooperative_sync")
def cooperative_sync(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """A sync handler that waits up to ``seconds`` but returns as soon as it is cancelled."""
    stopped = ctx.wait_cancelled(float(payload.get("seconds", 30)))
    return {"stopped_early": stopped}


@handler("tests.bad_result")
async def bad_result(payload: dict[str, Any], ctx: JobContext) -> Any:
    """Returns what ``kind`` asks for: something the result column cannot hold."""
    kind = payload.get("kind")
    if kind == "set":
        return {"values": {1, 2, 3}}
    if kind == "list":
        return [1, 2, 3]
    if kind == "huge":
        return {"blob": "x" * (2 * 1024 * 1024)}
    if kind == "nan":
        return {"value": float("nan")}
    if kind == "nul":
        return {"text": "a\x00b"}
    return None


@handler("tests.bad_result_sync")
def bad_result_sync(payload: dict[str, Any], ctx: JobContext) -> Any:
    """Like tests.bad_result, from a thread (where the executor checks and encodes sync results)."""
    if payload.get("kind") == "huge":
        return {"blob": "x" * (2 * 1024 * 1024)}
    return {"values": {1, 2, 3}}


@handler("tests.exit")
async def exit_handler(payload: dict[str, Any], ctx: JobContext) -> None:
    """Raises SystemExit, which must fail the job, not stop the executor."""
    raise SystemExit(3)


@handler("tests.sleep_sync")
def sleep_sync(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """A well-behaved sync handler: sleeps ``seconds`` in short steps, stopping when cancelled."""
    deadline = time.monotonic() + float(payload.get("seconds", 1))
    while time.monotonic() < deadline:
        if ctx.wait_cancelled(0.05):
            return {"cancelled": True}
    return {"slept": True}


@handler("tests.async_sleep_then_echo")
async def async_sleep_then_echo(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    await asyncio.sleep(float(payload.get("seconds", 0.1)))
    return payload
