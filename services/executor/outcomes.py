"""Turning how a handler call ended into the outcome complete_jobs writes.

- Success: COMPLETED with the handler's dict as result (None means {}), if it is JSON and small enough.
- Failure with attempts left: PENDING, to run again after an exponential backoff with jitter.
- Failure with no attempts left, or PermanentError: FAILED.
- Cancel: CANCELLED.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

from shared.database.queue import JobOutcome, LeasedJob
from shared.jobs import JobStatus

__all__ = [
    "CANCELLED_MESSAGE",
    "MAX_ERROR_MESSAGE_CHARS",
    "BackoffPolicy",
    "InvalidResult",
    "cancelled",
    "completed",
    "describe_error",
    "encode_result",
    "failed",
]

MAX_ERROR_MESSAGE_CHARS = 4000
CANCELLED_MESSAGE = "cancelled by request"


class InvalidResult(ValueError):
    """The handler returned something the jobs table cannot store as a result."""


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with "equal jitter": attempt n waits between half and all of
    min(cap, base * 2**(n-1)). Delays grow with every attempt, yet retries of many jobs that failed
    together (a downstream outage) spread out instead of hammering it again all at once."""

    base_seconds: float
    cap_seconds: float

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retrying after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt - 1, 0), 64)  # 2**64 s is past any cap; avoids float overflow
        ceiling = min(self.cap_seconds, self.base_seconds * math.pow(2, exponent))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def encode_result(result: Any, max_bytes: int) -> str:
    """The handler's return value as JSON text for the result column; InvalidResult says why not."""
    if result is None:
        return "{}"
    if not isinstance(result, dict):
        raise InvalidResult(f"handler returned {type(result).__name__}, not a dict (a JSON object) or None")
    try:
        encoded = json.dumps(result, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidResult(f"handler result is not JSON-serialisable: {error}") from error
    if "\\u0000" in encoded:
        raise InvalidResult("handler result contains NUL characters, which PostgreSQL jsonb cannot store")
    try:
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise InvalidResult(f"handler result is not valid Unicode: {error.reason}") from error
    if size > max_bytes:
        raise InvalidResult(f"handler result is {size} bytes as JSON; the limit is {max_bytes}")
    return encoded


def describe_error(error: BaseException) -> str:
    """A one-line-ish message for error_message: the exception's type and text, bounded and storable."""
    text = str(error).strip()
    message = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return clean_message(message)


def clean_message(message: str) -> str:
    """Bounded, and free of the NUL characters PostgreSQL text cannot hold."""
    message = message.replace("\x00", "\\0")
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 15] + "... (truncated)"
    return message.encode("utf-8", "replace").decode("utf-8")


def completed(job: LeasedJob, encoded_result: str) -> JobOutcome:
    return JobOutcome(job.job_id, job.lease_token, JobStatus.COMPLETED, result=encoded_result)


def failed(job: LeasedJob, message: str, *, retryable: bool, backoff: BackoffPolicy) -> JobOutcome:
    """A failed attempt: PENDING for a retry while attempts remain and the error allows it, else FAILED."""
    message = clean_message(message)
    if retryable and job.attempt < job.max_attempts:
        return JobOutcome(
            job.job_id,
            job.lease_token,
            JobStatus.PENDING,
            error_message=message,
            retry_delay=backoff.delay(job.attempt),
        )
    return JobOutcome(job.job_id, job.lease_token, JobStatus.FAILED, error_message=message)


def cancelled(job: LeasedJob) -> JobOutcome:
    return JobOutcome(job.job_id, job.lease_token, JobStatus.CANCELLED, error_message=CANCELLED_MESSAGE)
