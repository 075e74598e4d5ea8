"""The example job types with their payload models: the one contract the producer (examples/producer.py)
and the handlers (examples/handlers.py) share.

A ``JobDefinition`` (from jobclient) names a job type and the pydantic model (or dataclass) of its payload. The
producer submits a model instance (``client.submit(word_count, WordCount(text="..."))``); the handler,
registered with ``@handler(word_count)``, receives the payload validated into that model, and a payload
that does not fit fails its job at once with each bad field named.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from jobclient import JobDefinition

__all__ = ["Countdown", "Flaky", "WordCount", "WordCountResult", "countdown", "flaky", "word_count"]


class WordCount(BaseModel):
    """Count the words and lines of ``text``, and name its ``top`` most frequent words."""

    text: str
    top: int = Field(default=3, ge=0)


class WordCountResult(BaseModel):
    words: int
    lines: int
    top: list[tuple[str, int]]


class Countdown(BaseModel):
    """Count down from ``start``, one step per ``interval`` seconds."""

    start: int = Field(default=3, ge=0, le=1000)
    interval: float = Field(default=0.1, ge=0, le=60)


class Flaky(BaseModel):
    """Fail the first ``failures`` attempts, then succeed."""

    failures: int = Field(default=1, ge=0)


word_count = JobDefinition("examples.word_count", WordCount)
countdown = JobDefinition("examples.countdown", Countdown)
flaky = JobDefinition("examples.flaky", Flaky)
