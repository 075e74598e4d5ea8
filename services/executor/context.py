"""What a handler knows about the attempt it runs: ids, attempt numbers, deadline and cancellation."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone

__all__ = ["JobContext"]

_logger = logging.getLogger("services.executor.job")


class JobContext:
    """Handed to every handler call as its second argument.

    ``cancelled`` turns true when the job was cancelled, timed out, lost its lease or the executor is
    shutting down; a long-running handler should check it (or wait on it with ``wait_cancelled``)
    and return early. Whatever it returns after that is discarded.
    """

    __slots__ = ("_cancel", "_deadline_monotonic", "attempt", "deadline", "job_id", "max_attempts", "type")

    def __init__(self, job_id: int, job_type: str, attempt: int, max_attempts: int, timeout_seconds: float) -> None:
        self.job_id = job_id
        self.type = job_type
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.deadline: datetime = datetime.now(timezone.utc) + timedelta(seconds=timeout_seconds)
        self._deadline_monotonic = time.monotonic() + timeout_seconds
        # A threading.Event, not an asyncio one: sync handlers check it from worker threads.
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        """True once the handler should stop: its result will be discarded."""
        return self._cancel.is_set()

    @property
    def is_last_attempt(self) -> bool:
        """True when a retryable failure of this attempt fails the job for good."""
        return self.attempt >= self.max_attempts

    @property
    def remaining_seconds(self) -> float:
        """Seconds left before the attempt times out (never negative)."""
        return max(0.0, self._deadline_monotonic - time.monotonic())

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block a sync handler up to ``timeout`` seconds or until cancelled; return ``cancelled``.

        Async handlers need not call this: their task is cancelled for them.
        """
        return self._cancel.wait(timeout)

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry this job's id, type and attempt."""
        return logging.LoggerAdapter(_logger, {"job_id": self.job_id, "type": self.type, "attempt": self.attempt})

    def cancel(self) -> None:
        """Tell the handler to stop (called by the executor, not by handlers)."""
        self._cancel.set()

    def __repr__(self) -> str:
        return f"JobContext(job_id={self.job_id}, type={self.type!r}, attempt={self.attempt}/{self.max_attempts})"
