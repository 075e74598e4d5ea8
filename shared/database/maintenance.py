"""What the scheduler does to jobs: promote, rescue, prune, compact counts; and its leader lock and wake-ups.

Every call is one short transaction over a bounded batch. ``JobMaintenance`` uses the engine's pool;
``LeaderLock`` and ``ChannelListener`` each keep one dedicated connection of their own, detached from the
pool, because what they hold (a session lock, a LISTEN) lives and dies with that connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg2
from sqlalchemy import Connection, Engine

from shared.database.engine import translate_errors
from shared.database.queries import query
from shared.errors import DatabaseUnavailable
from shared.jobs import FINISHED_STATUSES, JobStatus

__all__ = [
    "SCHEDULER_LEADER_LOCK_KEY",
    "ChannelListener",
    "CompactedCounts",
    "JobMaintenance",
    "LeaderLock",
    "PromotedJob",
    "RescuedJob",
]

# Any fixed bigint will do; advisory locks are per database, so each deployment has its own leader.
SCHEDULER_LEADER_LOCK_KEY = 0x6A6F62_73636864  # "job" "schd"
# The server frees a vanished leader's lock after about 5 + 2 * 3 = 11 s of silence on its connection.
LEADER_SESSION_KEEPALIVES = {"idle_seconds": 5, "interval_seconds": 2, "count": 3}


@dataclass(frozen=True)
class PromotedJob:
    """A job made READY, and how long after its run_at that happened."""

    job_id: int
    lateness_seconds: float


@dataclass(frozen=True)
class RescuedJob:
    """A job taken back from an executor whose lease expired, and where it went."""

    job_id: int
    type: str
    status: JobStatus
    attempts: int
    max_attempts: int
    error_message: str


@dataclass(frozen=True)
class CompactedCounts:
    """How many job_counts delta rows were folded, and into how many rows."""

    folded: int
    written: int


class JobMaintenance:
    """The scheduler's duties against the jobs table, each one bounded statement in its own transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def promote_due_jobs(self, limit: int) -> list[PromotedJob]:
        """Make up to ``limit`` due PENDING jobs READY, and wake the executors when there were any."""
        with translate_errors(), self.engine.begin() as conn:
            rows = conn.execute(query("promote_due_jobs"), {"limit": limit}).all()
            if rows:
                conn.execute(query("notify_jobs_ready"))
        return [PromotedJob(row.job_id, max(0.0, row.lateness_seconds)) for row in rows]

    def seconds_until_next_due(self) -> float | None:
        """Seconds until the earliest PENDING job is due (0 or less: due now); None when none is PENDING."""
        with translate_errors(), self.engine.connect() as conn:
            seconds = conn.execute(query("select_next_due_delay")).scalar_one()
        return None if seconds is None else float(seconds)

    def rescue_expired_leases(self, limit: int) -> list[RescuedJob]:
        """Take back up to ``limit`` PROCESSING jobs whose lease expired: READY, FAILED or CANCELLED."""
        with translate_errors(), self.engine.begin() as conn:
            rows = conn.execute(query("rescue_expired_leases"), {"limit": limit}).all()
            if any(row.status == JobStatus.READY.value for row in rows):
                conn.execute(query("notify_jobs_ready"))
        return [
            RescuedJob(
                job_id=row.job_id,
                type=row.type,
                status=JobStatus(row.status),
                attempts=row.attempts,
                max_attempts=row.max_attempts,
                error_message=row.error_message,
            )
            for row in rows
        ]

    def prune_finished_jobs(self, status: JobStatus, older_than: timedelta, limit: int) -> int:
        """Delete up to ``limit`` jobs in the finished ``status`` that finished before ``older_than`` ago."""
        if status not in FINISHED_STATUSES:
            raise ValueError(f"only finished jobs are pruned, not {status.value}")
        params = {"status": status.value, "older_than_seconds": older_than.total_seconds(), "limit": limit}
        with translate_errors(), self.engine.begin() as conn:
            return conn.execute(query("prune_finished_jobs"), params).rowcount

    def compact_job_counts(self, limit: int) -> CompactedCounts:
        """Fold up to ``limit`` job_counts delta rows into one row per (type, status)."""
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(query("compact_job_counts"), {"limit": limit}).one()
        return CompactedCounts(folded=row.folded, written=row.written)

    def count_jobs_by_status(self) -> dict[JobStatus, int]:
        """Jobs per status from the job_counts aggregate (cheap after compaction), every status present."""
        counts = dict.fromkeys(JobStatus, 0)
        with translate_errors(), self.engine.connect() as conn:
            for row in conn.execute(query("count_jobs")):
                counts[JobStatus(row.status)] += row.jobs
        return counts


class _DedicatedConnection:
    """One autocommit connection outside the pool; closed (never returned) when anything goes wrong."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None

    @property
    def connected(self) -> bool:
        return self.conn is not None

    def open(self) -> Connection:
        if self.conn is None:
            with translate_errors():
                conn = self.engine.connect()
                try:
                    # Autocommit: an idle session must not sit in an open transaction, which would
                    # hold back vacuum and, for LISTEN, delay notifications until it ends.
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                    # Detached, so close() really closes it: a pooled connection would keep the
                    # session's lock or LISTEN alive after we meant to give it up.
                    conn.detach()
                except BaseException:
                    conn.close()
                    raise
            self.conn = conn
        return self.conn

    @contextmanager
    def using(self) -> Iterator[Connection]:
        """The open connection; on any error it is closed, so nothing it held outlives the error."""
        conn = self.open()
        try:
            with translate_errors():
                yield conn
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            # A broken connection may fail to close cleanly; it is gone either way.
            with suppress(Exception):
                conn.close()


class LeaderLock:
    """The scheduler's leadership: a session-level advisory lock on a connection of its own.

    Whoever holds the lock is the active scheduler. PostgreSQL releases it when the connection ends, so
    a crashed leader's lock is free as soon as the server notices the connection is gone.
    """

    def __init__(self, engine: Engine, key: int = SCHEDULER_LEADER_LOCK_KEY) -> None:
        self.key = key
        self._connection = _DedicatedConnection(engine)

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this process holds it. Raises DatabaseUnavailable."""
        fresh = not self._connection.connected
        with self._connection.using() as conn:
            if fresh:
                conn.execute(query("set_leader_session_keepalives"), LEADER_SESSION_KEEPALIVES)
            return bool(conn.execute(query("try_lock_scheduler_leader"), {"key": self.key}).scalar_one())

    def still_held(self) -> bool:
        """Whether this process still holds the lock; False when its connection broke (lock gone)."""
        if not self._connection.connected:
            return False
        try:
            with self._connection.using() as conn:
                held = bool(conn.execute(query("check_scheduler_leader"), {"key": self.key}).scalar_one())
        except DatabaseUnavailable:
            return False
        if not held:
            self._connection.close()
        return held

    def release(self) -> None:
        """Give the lock up and close its connection; closing alone would release it too."""
        if self._connection.connected:
            with suppress(DatabaseUnavailable), self._connection.using() as conn:
                conn.execute(query("unlock_scheduler_leader"), {"key": self.key})
        self._connection.close()


class ChannelListener:
    """LISTEN on ``jobs_scheduled`` on a connection of its own; ``fileno()`` is readable when one arrives.

    Use with ``select``: when the socket is readable, ``drain()`` reads the notifications (or raises
    DatabaseUnavailable when the readable socket meant the connection broke).
    """

    def __init__(self, engine: Engine) -> None:
        self._connection = _DedicatedConnection(engine)
        self._dbapi: Any = None

    @property
    def listening(self) -> bool:
        return self._connection.connected and self._dbapi is not None

    def listen(self) -> None:
        """Open the connection and LISTEN, unless already listening. Raises DatabaseUnavailable."""
        if self.listening:
            return
        with self._connection.using() as conn:
            conn.execute(query("listen_jobs_scheduled"))
            self._dbapi = conn.connection.dbapi_connection

    def fileno(self) -> int:
        if self._dbapi is None:
            raise DatabaseUnavailable("not listening")
        return int(self._dbapi.fileno())

    def drain(self) -> int:
        """Read the notifications that arrived; how many. Raises DatabaseUnavailable if the connection broke."""
        if self._dbapi is None:
            return 0
        try:
            self._dbapi.poll()
        except psycopg2.Error as error:
            self.close()
            raise DatabaseUnavailable(f"listening connection lost: {str(error).strip() or error}") from error
        # A server that ends the session (shutdown, pg_terminate_backend) first sends a FATAL message,
        # which libpq hands over as a notice on an idle connection; the closed socket only shows later.
        fatal = [notice.strip() for notice in self._dbapi.notices if notice.startswith("FATAL")]
        self._dbapi.notices.clear()
        if fatal:
            self.close()
            raise DatabaseUnavailable(f"listening connection lost: {fatal[-1]}")
        count = len(self._dbapi.notifies)
        self._dbapi.notifies.clear()
        return count

    def close(self) -> None:
        """Stop listening and close the connection."""
        self._dbapi = None
        self._connection.close()
