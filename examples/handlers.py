"""Custom handlers, loaded by an executor started with ``--handlers examples.handlers``:

    python -m services.executor --handlers examples.handlers

A handler is a plain or ``async`` function of ``(payload, ctx: JobContext)`` registered for a job type
with ``@handler(...)``. Annotated with a pydantic model (here the ones of examples/jobs.py), the payload
arrives validated: a payload that does not fit fails the job at once, naming each bad field, before the
handler is called. A handler returns a dict, a model or None (the job's ``result``). Raising any exception
fails the attempt and the job is retried after a backoff until ``max_attempts`` are used up; raising
``PermanentError`` fails the job at once (retrying cannot fix bad input).

Plain functions run in a thread of the executor's pool: they may block, and should check
``ctx.cancelled`` (or wait with ``ctx.wait_cancelled``) when they take long. ``async`` functions run on the
executor's event loop and must not block it; a cancel or timeout cancels their task.

tests/test_examples.py tests them in-process with ``services.executor.testing.run_handler``.
"""

from __future__ import annotations

import asyncio
import re

from examples import jobs
from examples.jobs import Countdown, Flaky, WordCount, WordCountResult
from services.executor import JobContext, handler

__all__ = ["countdown", "flaky", "word_count"]

_WORD = re.compile(r"\w+", re.UNICODE)


@handler(jobs.word_count)
def word_count(payload: WordCount, ctx: JobContext) -> WordCountResult:
    """Count the words and lines of the text, and its ``top`` most frequent words.

    A sync handler: it runs in a thread, so plain blocking code is fine here.
    """
    words = [word.lower() for word in _WORD.findall(payload.text)]
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    frequent = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: payload.top]
    ctx.logger.info("counted %d words", len(words))
    return WordCountResult(words=len(words), lines=len(payload.text.splitlines()), top=frequent)


@handler(jobs.countdown)
async def countdown(payload: Countdown, ctx: JobContext) -> dict[str, int]:
    """Count down, reporting progress at every step.

    An async handler: it awaits instead of blocking. A cancel or the job's timeout cancels the task, so
    the sleep simply stops; ``ctx.deadline`` says when the attempt would time out.
    """
    for done, remaining in enumerate(range(payload.start, 0, -1)):
        ctx.report_progress(100 * done / payload.start, f"{remaining} to go")
        ctx.logger.debug("%d to go (attempt %d, deadline %s)", remaining, ctx.attempt, ctx.deadline.isoformat())
        await asyncio.sleep(payload.interval)
    ctx.report_progress(100, "done")
    return {"counted_from": payload.start, "attempt": ctx.attempt}


@handler(jobs.flaky)
def flaky(payload: Flaky, ctx: JobContext) -> dict[str, int]:
    """Fail the first attempts, then succeed: shows the executor's retries with backoff. Plain exceptions
    are retryable."""
    if ctx.attempt <= payload.failures:
        raise ConnectionError(f"simulated outage on attempt {ctx.attempt} of {ctx.max_attempts}")
    return {"succeeded_on_attempt": ctx.attempt}
