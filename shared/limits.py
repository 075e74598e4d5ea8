"""Rate and concurrency limits per job type: the domain type and its validation.

A type with limits is leased only through lease_limited_jobs, which enforces them in the database at
lease time, across every executor. See docs/limits.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.errors import InvalidArgument
from shared.jobs import check_type_name

__all__ = [
    "DEFAULT_RATE_PERIOD_SECONDS",
    "MAX_LIMIT",
    "MAX_RATE_PERIOD_SECONDS",
    "TypeLimits",
]

# recent_starts keeps one timestamp per start in the window: rate_limit bounds the row's size.
MAX_LIMIT = 10_000
DEFAULT_RATE_PERIOD_SECONDS = 60
MAX_RATE_PERIOD_SECONDS = 86_400


@dataclass(frozen=True)
class TypeLimits:
    """The limits of one job type; None means no limit on that dimension.

    ``rate_period_seconds`` is None in a request when not given (60 then applies), and in a stored
    row when there is no rate limit (the period means nothing without one).
    """

    type: str
    max_running: int | None = None
    max_running_per_key: int | None = None
    rate_limit: int | None = None
    rate_period_seconds: int | None = None
    updated_at: datetime | None = None

    @property
    def period_seconds(self) -> int:
        """The rate window to store: the given period, or the default."""
        return self.rate_period_seconds if self.rate_period_seconds is not None else DEFAULT_RATE_PERIOD_SECONDS

    def validate(self) -> None:
        """Raise InvalidArgument naming the first bad field."""
        check_type_name(self.type)
        for field in ("max_running", "max_running_per_key", "rate_limit"):
            value = getattr(self, field)
            if value is not None and not 1 <= value <= MAX_LIMIT:
                raise InvalidArgument(field, f"must be between 1 and {MAX_LIMIT} when given, got {value}")
        if self.rate_period_seconds is not None:
            if self.rate_limit is None:
                raise InvalidArgument("rate_period_seconds", "is only meaningful with rate_limit, which is not set")
            if not 1 <= self.rate_period_seconds <= MAX_RATE_PERIOD_SECONDS:
                raise InvalidArgument(
                    "rate_period_seconds",
                    f"must be between 1 and {MAX_RATE_PERIOD_SECONDS}, got {self.rate_period_seconds}",
                )
        if self.max_running is None and self.max_running_per_key is None and self.rate_limit is None:
            raise InvalidArgument(
                "max_running",
                "set at least one of max_running, max_running_per_key or rate_limit "
                "(DeleteTypeLimits removes a type's limits)",
            )
