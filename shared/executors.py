"""The executor registry's record: what ListExecutors shows of one live executor process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["ExecutorRecord"]


@dataclass(frozen=True)
class ExecutorRecord:
    """One executor as it registered itself, with what its last heartbeat said.

    ``executor_id`` (hostname-pid-random) is also the ``lease_owner`` of the jobs it runs and the
    executor recorded with each of its attempts. ``last_seen_at`` is None until the database stored it.
    """

    executor_id: str
    host: str
    pid: int
    version: str
    types: tuple[str, ...]
    concurrency: int
    running: int
    started_at: datetime
    last_seen_at: datetime | None = None
