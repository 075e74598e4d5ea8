"""Turning how a handler call ended into the outcome complete_jobs writes.

- Success: COMPLETED with the handler's dict as result (None means {}; a pydantic model or a dataclass
  becomes its JSON object), if it is JSON and small enough.
- Failure with attempts left: PENDING, to run again after an exponential backoff with jitter.
- Failure with no attempts left, or PermanentError: FAILED.
- Cancel: CANCELLED.

Each outcome also says how the attempt ended (the job_attempts row complete_jobs writes with it): a
failure caused by an exception carries its type and its traceback (format_traceback: bounded, innermost
frames kept, nothing added to what Python prints: no local variables, so no payload values).
"""

from __future__ import annotations

import json
import math
import random
import traceback
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from services.executor.payloads import jsonable
from shared.database import JobOutcome, LeasedJob
from shared.jobs import AttemptOutcome, JobStatus

__all__ = [
    "CANCELLED_MESSAGE",
    "MAX_ERROR_MESSAGE_CHARS",
    "MAX_TRACEBACK_BYTES",
    "BackoffPolicy",
    "InvalidResult",
    "cancelled",
    "completed",
    "describe_error",
    "encode_result",
    "error_type",
    "failed",
    "format_traceback",
]

MAX_ERROR_MESSAGE_CHARS = 4000
# A stored traceback keeps its innermost frames within this many bytes (UTF-8).
MAX_TRACEBACK_BYTES = 16 * 1024
# Lines of a traceback longer than this (a huge exception message, a generated line of code) are cut.
MAX_TRACEBACK_LINE_CHARS = 2000
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
        try:
            result = jsonable(result)  # a model or a dataclass: its JSON form
        except ValueError as error:
            raise InvalidResult(f"handler result is not JSON-serialisable: {error}") from error
        if not isinstance(result, dict):
            raise InvalidResult(
                f"handler returned {type(result).__name__}, not a dict (a JSON object), a model, a dataclass or None"
            )
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


def error_type(error: BaseException) -> str:
    """The exception's class as the attempt's error_type: ``ValueError``, ``smtplib.SMTPDataError``."""
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def format_traceback(error: BaseException, skip_files: Collection[str] = ()) -> str:
    """The traceback Python would print for ``error`` (with its causes), at most MAX_TRACEBACK_BYTES.

    Leading frames of code in ``skip_files`` (the executor's own, calling the handler) are left out, so
    the traceback starts at the handler. When too long, the outermost lines go first: the innermost
    frames and the exception itself say where it failed. Only what Python prints: no local variables,
    so no payload values.
    """
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename in skip_files:
        tb = tb.tb_next
    lines: list[str] = []
    for chunk in traceback.TracebackException(type(error), error, tb).format():
        for line in chunk.splitlines(keepends=True):
            if len(line) > MAX_TRACEBACK_LINE_CHARS:
                line = line[: MAX_TRACEBACK_LINE_CHARS - 15] + "... (truncated)\n"
            lines.append(line.replace("\x00", "\\0"))
    sizes = [len(line.encode("utf-8", "replace")) for line in lines]
    total = sum(sizes)
    first = 0
    while total > MAX_TRACEBACK_BYTES - 100 and first < len(lines) - 1:
        total -= sizes[first]
        first += 1
    kept = "".join(lines[first:])
    if first:
        kept = f"... ({first} outer lines of the traceback omitted)\n" + kept
    return kept.encode("utf-8", "replace").decode("utf-8")


def clean_message(message: str) -> str:
    """Bounded, and free of the NUL characters PostgreSQL text cannot hold."""
    message = message.replace("\x00", "\\0")
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 15] + "... (truncated)"
    return message.encode("utf-8", "replace").decode("utf-8")


def completed(job: LeasedJob, encoded_result: str) -> JobOutcome:
    return JobOutcome(job.job_id, job.lease_token, JobStatus.COMPLETED, result=encoded_result)


def failed(
    job: LeasedJob,
    message: str,
    *,
    retryable: bool,
    backoff: BackoffPolicy,
    error: BaseException | None = None,
    skip_files: Collection[str] = (),
    timed_out: bool = False,
) -> JobOutcome:
    """A failed attempt: PENDING for a retry while attempts remain and the error allows it, else FAILED.

    ``error``: the exception that failed it, whose type and traceback (format_traceback, ``skip_files``)
    the attempt records; ``timed_out``: the attempt ran out of time (recorded as TIMED_OUT).
    """
    again = retryable and job.attempt < job.max_attempts
    return JobOutcome(
        job.job_id,
        job.lease_token,
        JobStatus.PENDING if again else JobStatus.FAILED,
        error_message=clean_message(message),
        retry_delay=backoff.delay(job.attempt) if again else None,
        attempt_outcome=AttemptOutcome.TIMED_OUT if timed_out else None,
        error_type=error_type(error) if error is not None else None,
        traceback=format_traceback(error, skip_files) if error is not None else None,
    )


def cancelled(job: LeasedJob) -> JobOutcome:
    return JobOutcome(job.job_id, job.lease_token, JobStatus.CANCELLED, error_message=CANCELLED_MESSAGE)
