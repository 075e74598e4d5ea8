"""What lives and dies with one database session: the scheduler's leader lock, LISTEN, and the executor's
liveness lock (taken on its LISTEN session).

Each holds one autocommit connection of its own, detached from the pool, because what it holds (a
session-level advisory lock, a LISTEN) ends with that connection: closing it really gives them up, and
a broken connection is never handed to anyone else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg2
from sqlalchemy import Connection, Engine

from shared.database import metrics
from shared.database.gateway import Gateway, operation
from shared.database.queries import run
from shared.errors import DatabaseUnavailable

__all__ = ["SCHEDULER_LEADER_LOCK_KEY", "LeaderLock", "Listening", "SessionQueries"]

logger = logging.getLogger("shared.database")

# How long a new session waits for an executor's earlier session to release its liveness lock.
LIVENESS_LOCK_WAIT_SECONDS = 5.0
LIVENESS_LOCK_RETRY_SECONDS = 0.05

# Any fixed bigint will do; advisory locks are per database, so each deployment has its own leader.
SCHEDULER_LEADER_LOCK_KEY = 0x6A6F62_73636864  # "job" "schd"
# The server frees a vanished leader's lock after about 5 + 2 * 3 = 11 s of silence on its connection.
LEADER_SESSION_KEEPALIVES = {"idle_seconds": 5, "interval_seconds": 2, "count": 3}


class Session:
    """One autocommit connection outside the pool; closed (never returned) when anything goes wrong."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None

    @property
    def connected(self) -> bool:
        return self.conn is not None

    def open(self) -> Connection:
        if self.conn is None:
            conn = self.engine.connect()
            try:
                # Autocommit: an idle session must not sit in an open transaction, which would hold back
                # vacuum and, for LISTEN, delay notifications until it ends.
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                # Detached, so close() really closes it: a pooled connection would keep the session's
                # lock or LISTEN alive after we meant to give it up.
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
    """The scheduler's leadership: a session-level advisory lock on a session of its own, taken and
    checked with the gateway's try_lock_scheduler_leader / check_scheduler_leader / unlock_scheduler_leader.

    PostgreSQL releases the lock when the session ends, so a crashed leader's lock is free as soon as
    the server notices the connection is gone.
    """

    def __init__(self, engine: Engine, key: int = SCHEDULER_LEADER_LOCK_KEY) -> None:
        self.key = key
        self.session = Session(engine)


class Listening:
    """A session LISTENing on one channel, for an event loop to watch (``fileno``) and ``drain``.

    Any DatabaseUnavailable from ``drain`` means the session is gone: close it and listen again.
    """

    def __init__(self, session: Session, operation: str) -> None:
        self._session = session
        self._operation = operation
        conn = session.open()
        self._dbapi: Any = conn.connection.dbapi_connection

    def fileno(self) -> int:
        return int(self._dbapi.fileno())

    def drain(self) -> int:
        """Read what arrived (never blocks); how many notifications. DatabaseUnavailable when the session
        broke: an error on the socket, or the FATAL notice a server sends before it ends a session
        (shutdown, pg_terminate_backend), which libpq hands over on an idle connection before the
        closed socket shows."""
        try:
            self._dbapi.poll()
        except psycopg2.Error as error:
            raise self._lost(str(error).strip() or type(error).__name__) from error
        fatal = [notice.strip() for notice in self._dbapi.notices if notice.startswith("FATAL")]
        self._dbapi.notices.clear()
        if fatal:
            raise self._lost(fatal[-1])
        count = len(self._dbapi.notifies)
        self._dbapi.notifies.clear()
        return count

    def _lost(self, why: str) -> DatabaseUnavailable:
        metrics.DATABASE_ERRORS.labels(self._operation).inc()
        self.close()
        return DatabaseUnavailable(f"LISTEN connection lost: {why}")

    def close(self) -> None:
        self._session.close()


class SessionQueries(Gateway):
    """The statements that need a session of their own."""

    def leader_lock(self, key: int = SCHEDULER_LEADER_LOCK_KEY) -> LeaderLock:
        """A leader lock, not yet taken (its session opens with the first try)."""
        return LeaderLock(self.engine, key)

    @operation()
    def try_lock_scheduler_leader(self, lock: LeaderLock) -> bool:
        """Take the lock if it is free; True when this process holds it (re-entrant for its holder)."""
        fresh = not lock.session.connected
        with lock.session.using() as conn:
            if fresh:
                run(conn, "set_leader_session_keepalives", LEADER_SESSION_KEEPALIVES)
            return bool(run(conn, "try_lock_scheduler_leader", {"key": lock.key}).value("acquired"))

    @operation()
    def check_scheduler_leader(self, lock: LeaderLock) -> bool:
        """Whether this process still holds the lock. False without a session; DatabaseUnavailable when
        the session broke (the lock is gone with it)."""
        if not lock.session.connected:
            return False
        with lock.session.using() as conn:
            held = bool(run(conn, "check_scheduler_leader", {"key": lock.key}).value("held"))
        if not held:
            lock.session.close()
        return held

    @operation()
    def unlock_scheduler_leader(self, lock: LeaderLock) -> None:
        """Give the lock up and close its session (closing alone would release it too)."""
        try:
            if lock.session.connected:
                with lock.session.using() as conn:
                    run(conn, "unlock_scheduler_leader", {"key": lock.key})
        finally:
            lock.session.close()

    @operation()
    def listen_jobs_ready(self, executor_id: str | None = None) -> Listening:
        """A session LISTENing on jobs_ready (a job became READY, or a limited job ended).

        With ``executor_id`` the session also holds that executor's liveness lock (lock_executor_liveness),
        which ends with it: while the session lasts, rescue_lost_jobs knows the executor is alive.
        """
        return self._listen("listen_jobs_ready", executor_id)

    @operation()
    def listen_jobs_scheduled(self) -> Listening:
        """A session LISTENing on jobs_scheduled (a PENDING job was added: the promoter may wake sooner)."""
        return self._listen("listen_jobs_scheduled")

    def _listen(self, name: str, executor_id: str | None = None) -> Listening:
        session = Session(self.engine)
        try:
            with session.using() as conn:
                run(conn, name)
                if executor_id is not None:
                    _lock_executor_liveness(conn, executor_id)
            return Listening(session, name)
        except BaseException:
            session.close()
            raise


def _lock_executor_liveness(conn: Connection, executor_id: str) -> None:
    """Take the executor's liveness lock on ``conn``, waiting a little for a previous session of this
    executor to end: a session that was just terminated keeps the lock for the moment its backend takes
    to exit. Should it stay held, the executor runs without it (and only its leases' expiry tells whether
    it died) until its session is reopened."""
    deadline = time.monotonic() + LIVENESS_LOCK_WAIT_SECONDS
    while not run(conn, "lock_executor_liveness", {"executor_id": executor_id}).value("acquired"):
        if time.monotonic() >= deadline:
            logger.warning(
                "the liveness lock of executor %s is held by another session (an earlier one that the server "
                "has not seen end?): until this session is reopened, only its leases' expiry tells whether it died",
                executor_id,
            )
            return
        time.sleep(LIVENESS_LOCK_RETRY_SECONDS)
