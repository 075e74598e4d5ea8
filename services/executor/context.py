"""What a handler knows about the attempt it runs: ids, attempt numbers, deadline and cancellation."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone

from shared.telemetry import trace_id_of

__all__ = ["JobContext"]

_logger = logging.getLogger("services.executor.job")
_EVENT_LOCK = threading.Lock()
# Longer messages are cut: progress is a status line, not a log.
MAX_PROGRESS_MESSAGE = 1000


class JobContext:
    """Handed to every handler call as its second argument.

    ``cancelled`` turns true when the job was cancelled, timed out, lost its lease or the executor is
    shutting down; a long-running handler should check it (or wait on it with ``wait_cancelled``)
    and return early. Whatever it returns after that is discarded.
    """

    __slots__ = (
        "_cancelled",
        "_deadline_monotonic",
        "_event",
        "_progress",
        "_traceparent",
        "attempt",
        "job_id",
        "max_attempts",
        "type",
    )

    def __init__(
        self,
        job_id: int,
        job_type: str,
        attempt: int,
        max_attempts: int,
        timeout_seconds: float,
        traceparent: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.type = job_type
        self.attempt = attempt
        self.max_attempts = max_attempts
        self._traceparent = traceparent
        self._deadline_monotonic = time.monotonic() + timeout_seconds
        self._cancelled = False
        # Created only when a sync handler waits on it: most jobs never need one.
        self._event: threading.Event | None = None
        # The latest progress not yet written; the heartbeat loop writes it (about once a second).
        self._progress: tuple[int, str] | None = None

    @property
    def cancelled(self) -> bool:
        """True once the handler should stop: its result will be discarded."""
        return self._cancelled

    @property
    def deadline(self) -> datetime:
        """When the attempt times out (UTC)."""
        return datetime.now(timezone.utc) + timedelta(seconds=self.remaining_seconds)

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
        if self._cancelled:
            return True
        with _EVENT_LOCK:
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        if self._cancelled:  # cancel() may have run before the event existed
            event.set()
        return event.wait(timeout)

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry this job's id, type, attempt and (when traced) trace id."""
        fields: dict[str, object] = {"job_id": self.job_id, "type": self.type, "attempt": self.attempt}
        trace_id = trace_id_of(self._traceparent)
        if trace_id is not None:
            fields["trace_id"] = trace_id
        return logging.LoggerAdapter(_logger, fields)

    def report_progress(self, percent: float, message: str = "") -> None:
        """Record how far the handler has got (0-100) and what it is doing; safe from any thread.

        Cheap enough to call in a tight loop: only the latest report is kept, and the executor stores it
        on the job about once a second, where GetJob, WatchJob, REST and ``jobctl watch`` show it.
        """
        if not 0 <= percent <= 100:
            raise ValueError(f"progress percent must be between 0 and 100, got {percent}")
        self._progress = (round(percent), str(message)[:MAX_PROGRESS_MESSAGE])

    def take_progress(self) -> tuple[int, str] | None:
        """The progress reported since the last call, if any (called by the executor, not by handlers)."""
        progress, self._progress = self._progress, None
        return progress

    def cancel(self) -> None:
        """Tell the handler to stop (called by the executor, not by handlers)."""
        self._cancelled = True
        event = self._event
        if event is not None:
            event.set()

    def __repr__(self) -> str:
        return f"JobContext(job_id={self.job_id}, type={self.type!r}, attempt={self.attempt}/{self.max_attempts})"
