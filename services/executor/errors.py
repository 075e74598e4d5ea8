"""Exceptions handlers raise to steer what happens to their job.

    Exception
    └── PermanentError (alias NonRetryableError)   fail the job at once, without retrying

Any other exception a handler raises is a retryable failure: the job runs again after a backoff,
until its attempts are used up.
"""

from __future__ import annotations

__all__ = ["NonRetryableError", "PermanentError"]


class PermanentError(Exception):
    """Raise from a handler when retrying cannot help (bad input, a 4xx answer): the job ends FAILED now."""


NonRetryableError = PermanentError
