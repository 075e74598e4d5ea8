"""What the API does to type limits: set (create or replace), list, delete. One short transaction each.

Enforcement is not here: executors lease limited types with lease_limited_jobs (shared/database/queue.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from shared.database.engine import translate_errors
from shared.database.queries import query
from shared.errors import TypeLimitsNotFound
from shared.limits import TypeLimits

__all__ = ["LimitsStore"]


def _limits(row: Any) -> TypeLimits:
    return TypeLimits(
        type=row.type,
        max_running=row.max_running,
        max_running_per_key=row.max_running_per_key,
        rate_limit=row.rate_limit,
        # The stored period means nothing without a rate limit.
        rate_period_seconds=row.rate_period_seconds if row.rate_limit is not None else None,
        updated_at=row.updated_at,
    )


class LimitsStore:
    """The API's access to the job_type_limits table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def set_type_limits(self, limits: TypeLimits) -> TypeLimits:
        """Create or replace every limit of ``limits.type`` (validated by the caller); the stored row."""
        params = {
            "type": limits.type,
            "max_running": limits.max_running,
            "max_running_per_key": limits.max_running_per_key,
            "rate_limit": limits.rate_limit,
            "rate_period_seconds": limits.period_seconds,
        }
        with translate_errors(), self.engine.begin() as conn:
            return _limits(conn.execute(query("upsert_type_limits"), params).one())

    def list_type_limits(self) -> list[TypeLimits]:
        """Every limited type, ordered by type."""
        with translate_errors(), self.engine.connect() as conn:
            return [_limits(row) for row in conn.execute(query("list_type_limits")).all()]

    def delete_type_limits(self, job_type: str) -> None:
        """Remove the limits of ``job_type``; TypeLimitsNotFound when it has none."""
        with translate_errors(), self.engine.begin() as conn:
            if conn.execute(query("delete_type_limits"), {"type": job_type}).first() is None:
                raise TypeLimitsNotFound(job_type)
