"""The executor registry (table ``executors``): executors register and refresh themselves, and leave
when they stop; the api lists the live ones. Every call is one short statement."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from shared.database.gateway import Gateway, operation
from shared.database.queries import run
from shared.executors import ExecutorRecord

__all__ = ["ExecutorQueries"]

# ListExecutors has no paging: an executor per slot of a few machines makes dozens, not thousands.
MAX_LISTED_EXECUTORS = 10_000


class _ExecutorRow(NamedTuple):
    executor_id: str
    host: str
    pid: int
    version: str
    types: list[str]
    concurrency: int
    running: int
    started_at: datetime
    last_seen_at: datetime

    def domain(self) -> ExecutorRecord:
        return ExecutorRecord(
            executor_id=self.executor_id,
            host=self.host,
            pid=self.pid,
            version=self.version,
            types=tuple(self.types),
            concurrency=self.concurrency,
            running=self.running,
            started_at=self.started_at,
            last_seen_at=self.last_seen_at,
        )


class ExecutorQueries(Gateway):
    """The executors table."""

    @operation()
    def register_executor(
        self, record: ExecutorRecord, lease_seconds: float, liveness_seconds: float | None = None
    ) -> None:
        """Write or refresh ``record``: listed for ``lease_seconds`` from now unless refreshed again.

        ``liveness_seconds``: the executor holds its liveness lock (listen_jobs_ready), and once that is
        gone and it has not been seen for this long, rescue_lost_jobs takes its jobs back; None: only
        its leases' expiry counts."""
        params = {
            "executor_id": record.executor_id,
            "host": record.host,
            "pid": record.pid,
            "version": record.version,
            "types": list(record.types),
            "concurrency": record.concurrency,
            "running": record.running,
            "started_at": record.started_at,
            "lease_seconds": lease_seconds,
            "liveness_seconds": liveness_seconds,
        }
        with self.engine.begin() as conn:
            run(conn, "register_executor", params)

    @operation()
    def unregister_executor(self, executor_id: str) -> None:
        """Remove an executor's record (it stopped cleanly)."""
        with self.engine.begin() as conn:
            run(conn, "unregister_executor", {"executor_id": executor_id})

    @operation()
    def list_executors(self) -> list[ExecutorRecord]:
        """The live executors, oldest first."""
        with self.engine.connect() as conn:
            rows = run(conn, "list_executors", {"limit": MAX_LISTED_EXECUTORS}).records(_ExecutorRow)
        return [row.domain() for row in rows]
