"""Exceptions handlers raise to steer what happens to their job.

    Exception
    └── PermanentError (alias NonRetryableError)   fail the job at once, without retrying
        └── InvalidPayload                          the payload does not fit the handler's payload type

Any other exception a handler raises is a retryable failure: the job runs again after a backoff,
until its attempts are used up.
"""

from __future__ import annotations

__all__ = ["InvalidPayload", "NonRetryableError", "PermanentError"]


class PermanentError(Exception):
    """Raise from a handler when retrying cannot help (bad input, a 4xx answer): the job ends FAILED now."""


NonRetryableError = PermanentError


class InvalidPayload(PermanentError):
    """The payload failed validation against the handler's model or dataclass; the message names each field
    (``payload.to: field required; payload.n: input should be a valid integer``). Raised by the executor
    before the handler is called."""
