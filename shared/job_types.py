"""Job types as operators see them: how many jobs of each status, the limits, and whether paused.

A type exists for ListJobTypes as long as it has jobs, limits or a pause. Pausing is enforced in
PostgreSQL when executors lease (lease_jobs and lease_limited_jobs skip paused types), so it holds for
every executor at once; submits of a paused type are still accepted. See docs/limits.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from shared.jobs import JobStatus
from shared.limits import TypeLimits

__all__ = ["JobType"]


@dataclass(frozen=True)
class JobType:
    """One job type: jobs per status (statuses without jobs left out), limits (None: none), pause."""

    type: str
    counts: dict[JobStatus, int] = field(default_factory=dict)
    limits: TypeLimits | None = None
    paused_at: datetime | None = None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    @property
    def name(self) -> str:
        """The type's name (what ListJobTypes pages by)."""
        return self.type
