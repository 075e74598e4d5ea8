"""Handlers the executor tests load with ``--handlers tests.handlers_for_tests``.

Job types are prefixed ``tests.`` so they cannot collide with built-ins.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from services.executor import JobContext, handler


@handler("tests.record")
async def record(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """After ``seconds`` (default 0), append ``job_id attempt`` to a file of this process under RECORD_DIR:
    proof of every execution. With ``"first": true`` it writes before the wait instead: proof of every
    start, even of an execution that never ends."""
    if not payload.get("first"):
        await asyncio.sleep(float(payload.get("seconds", 0)))
    directory = os.environ["RECORD_DIR"]
    line = f"{ctx.job_id} {ctx.attempt}\n".encode()
    # O_APPEND: one write per execution, whole lines even if several processes shared a file.
    descriptor = os.open(os.path.join(directory, f"{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)
    if payload.get("first"):
        await asyncio.sleep(float(payload.get("seconds", 0)))
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


@handler("tests.flaky_async")
async def flaky_async(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Fail the first ``failures`` attempts (default 1) with a ValueError raised one call deeper, then
    succeed: an async handler's failure, for the attempt history's tracebacks."""
    if ctx.attempt <= int(payload.get("failures", 1)):
        _refuse(ctx.attempt)
    return {"succeeded_on_attempt": ctx.attempt}


def _refuse(attempt: int) -> None:
    raise ValueError(f"refused on attempt {attempt}")


@handler("tests.slow_first_attempt")
async def slow_first_attempt(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Sleep ``seconds`` (default 60) on the first attempt only; later attempts return at once."""
    if ctx.attempt == 1:
        await asyncio.sleep(float(payload.get("seconds", 60)))
    return {"attempt": ctx.attempt}


class Invoice(BaseModel):
    """The payload of tests.typed: a pydantic model."""

    customer: str
    amount_cents: int = Field(gt=0)
    due: date
    lines: list[InvoiceLine] = []


class InvoiceLine(BaseModel):
    sku: str
    quantity: int = Field(default=1, ge=1)


class InvoiceReceipt(BaseModel):
    customer: str
    total_cents: int
    due: date
    issued_at: datetime


Invoice.model_rebuild()


@handler("tests.typed")
def typed(payload: Invoice, ctx: JobContext) -> InvoiceReceipt:
    """A typed sync handler: receives an Invoice, returns a model (stored as its JSON)."""
    assert isinstance(payload, Invoice)  # not a dict: the executor validated it into the model
    quantity = sum(line.quantity for line in payload.lines) or 1
    issued = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    return InvoiceReceipt(
        customer=payload.customer, total_cents=payload.amount_cents * quantity, due=payload.due, issued_at=issued
    )


@dataclass
class Greeting:
    """The payload and result of tests.typed_dataclass: a dataclass."""

    name: str
    times: int = 1


@handler("tests.typed_dataclass")
async def typed_dataclass(payload: Greeting, ctx: JobContext) -> Greeting:
    """A typed async handler on a dataclass."""
    return Greeting(name=" ".join([f"hello {payload.name}"] * payload.times), times=payload.times)
