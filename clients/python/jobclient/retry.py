"""When and how long the client waits before trying a call again."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace

from jobclient.errors import JobClientError

__all__ = ["DEFAULT_RETRY", "NO_RETRY", "RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of calls that failed with UNAVAILABLE or DEADLINE_EXCEEDED (nothing else is retried).

    The n-th retry waits ``min(max_backoff, initial_backoff * multiplier ** (n - 1))`` seconds, of which
    a random half is jitter (so clients that failed together do not come back together). A call gives up
    after ``max_attempts`` tries in all, or once ``max_elapsed`` seconds have passed since it started;
    each try's own deadline is cut so that it ends within ``max_elapsed`` too.

    Every call the client makes is safe to repeat: reads are; ``submit`` always sends an idempotency key
    (one it generated when the caller gave none); ``cancel`` and ``retry`` recognise their own earlier
    success when a repeat finds the job already cancelled or re-queued.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    max_elapsed: float | None = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")
        if self.max_elapsed is not None and self.max_elapsed <= 0:
            raise ValueError("max_elapsed must be positive (or None for no limit)")

    def lasting(self, seconds: float | None) -> RetryPolicy:
        """This policy for calls whose one try may take ``seconds`` (None: unbounded): max_elapsed at
        least that long."""
        if self.max_elapsed is None or (seconds is not None and seconds <= self.max_elapsed):
            return self
        return replace(self, max_elapsed=None if seconds is None else seconds + self.max_elapsed)

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry), jitter included."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** max(0, retry - 1))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)


class RetryState:
    """The retry bookkeeping of one call (or of one run of consecutive stream failures)."""

    def __init__(self, policy: RetryPolicy, deadline: float | None) -> None:
        self.policy = policy
        self.deadline = deadline
        self.reset()

    def reset(self) -> None:
        self.started = time.monotonic()
        self.attempt = 0

    def attempt_timeout(self) -> float | None:
        """The deadline of the next try: the per-call deadline, cut to what is left of max_elapsed."""
        self.attempt += 1
        if self.policy.max_elapsed is None:
            return self.deadline
        left = max(0.001, self.started + self.policy.max_elapsed - time.monotonic())
        return left if self.deadline is None else min(self.deadline, left)

    def delay_before_retry(self, error: JobClientError) -> float | None:
        """Seconds to sleep before trying again, or None when ``error`` should be raised."""
        if not error.retryable or self.attempt >= self.policy.max_attempts:
            return None
        delay = self.policy.backoff(self.attempt)
        if self.policy.max_elapsed is not None and time.monotonic() + delay >= self.started + self.policy.max_elapsed:
            return None
        return delay
