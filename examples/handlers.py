"""Custom handlers, loaded by an executor started with ``--handlers examples.handlers``:

    python -m services.executor --handlers examples.handlers

A handler is a plain or ``async`` function of ``(payload: dict, ctx: JobContext)`` registered for a job
type with ``@handler("type")``. It returns a JSON-like dict (the job's ``result``) or None. Raising any
exception fails the attempt and the job is retried after a backoff until ``max_attempts`` are used up;
raising ``PermanentError`` fails the job at once (retrying cannot fix bad input).

Plain functions run in a thread of the executor's pool: they may block, and should check
``ctx.cancelled`` (or wait with ``ctx.wait_cancelled``) when they take long. ``async`` functions run on the
executor's event loop and must not block it; a cancel or timeout cancels their task.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from services.executor import JobContext, PermanentError, handler

__all__ = ["countdown", "flaky", "word_count"]

_WORD = re.compile(r"\w+", re.UNICODE)


@handler("examples.word_count")
def word_count(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Count the words and lines of ``payload["text"]``; the ``top`` (default 3) most frequent words too.

    A sync handler: it runs in a thread, so plain blocking code is fine here.
    """
    text = payload.get("text")
    if not isinstance(text, str):
        # Bad input never gets better by retrying: fail the job now.
        raise PermanentError("payload.text must be a string")
    top = payload.get("top", 3)
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise PermanentError("payload.top must be a whole number >= 0")
    words = [word.lower() for word in _WORD.findall(text)]
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    frequent = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    ctx.logger.info("counted %d words", len(words))
    return {"words": len(words), "lines": len(text.splitlines()), "top": [[w, n] for w, n in frequent]}


@handler("examples.countdown")
async def countdown(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Count down from ``payload["from"]`` (default 3), one step per ``interval`` seconds (default 0.1).

    An async handler: it awaits instead of blocking. A cancel or the job's timeout cancels the task, so
    the sleep simply stops; ``ctx.deadline`` says when the attempt would time out.
    """
    start = payload.get("from", 3)
    interval = payload.get("interval", 0.1)
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= 1000:
        raise PermanentError("payload.from must be a whole number from 0 to 1000")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 <= interval <= 60:
        raise PermanentError("payload.interval must be a number of seconds from 0 to 60")
    for remaining in range(start, 0, -1):
        ctx.logger.debug("%d to go (attempt %d, deadline %s)", remaining, ctx.attempt, ctx.deadline.isoformat())
        await asyncio.sleep(interval)
    return {"counted_from": start, "attempt": ctx.attempt}


@handler("examples.flaky")
def flaky(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Fail the first ``payload["failures"]`` attempts (default 1), then succeed: shows the executor's
    retries with backoff. Plain exceptions are retryable."""
    failures = payload.get("failures", 1)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise PermanentError("payload.failures must be a whole number >= 0")
    if ctx.attempt <= failures:
        raise ConnectionError(f"simulated outage on attempt {ctx.attempt} of {ctx.max_attempts}")
    return {"succeeded_on_attempt": ctx.attempt}
