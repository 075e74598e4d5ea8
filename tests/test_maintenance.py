"""The scheduler's statements against real PostgreSQL: promote, rescue, prune, compact, leader lock, LISTEN."""

from __future__ import annotations

import contextlib
import random
import select
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import pytest
from sqlalchemy import Engine, text

from shared.database import LeaderLock
from shared.errors import DatabaseUnavailable
from shared.executors import ExecutorRecord
from shared.jobs import AttemptOutcome, JobStatus
from tests.support.gateway import BlockingDatabase, gateway
from tests.support.job_rows import execute, jobs, make_finished, make_processing, submit
from tests.support.processes import STARTUP_TIMEOUT, wait_until

LATER = timedelta(hours=1)


@pytest.fixture
def maintenance(engine: Engine) -> BlockingDatabase:
    """The gateway, as the scheduler's duties use it."""
    return gateway(engine)


@pytest.fixture
def jobs_ready(db: str) -> Iterator[Any]:
    """A connection listening on jobs_ready, as an executor's."""
    conn = psycopg2.connect(db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("LISTEN jobs_ready")
    yield conn
    conn.close()


def advisory_lock_holders(engine: Engine) -> list[int]:
    """The pids of the sessions holding an advisory lock in this test's database, one per lock."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalars()
        )


def notifications(conn: Any, timeout: float = 0.5) -> int:
    select.select([conn], [], [], timeout)
    conn.poll()
    count = len(conn.notifies)
    conn.notifies.clear()
    return count


def test_promote_due_jobs_makes_only_due_pending_jobs_ready_and_wakes_executors(
    engine: Engine, maintenance: BlockingDatabase, jobs_ready: Any
) -> None:
    due = submit(engine, 2, scheduled_in=LATER)
    future = submit(engine, 1, scheduled_in=LATER)
    ready = submit(engine, 1)
    notifications(jobs_ready, 0.1)  # the READY submit's own
    execute(engine, "UPDATE jobs SET run_at = now() - interval '2 seconds' WHERE job_id = ANY(:ids)", ids=due)

    promoted = maintenance.promote_due_jobs(limit=100)

    assert sorted(job.job_id for job in promoted) == due
    assert all(1.9 < job.lateness_seconds < 10 for job in promoted)
    rows = jobs(engine)
    assert [rows[i].status for i in due] == ["READY", "READY"]
    assert rows[future[0]].status == "PENDING"
    assert rows[ready[0]].status == "READY"
    assert notifications(jobs_ready) == 1
    assert maintenance.promote_due_jobs(limit=100) == []
    assert notifications(jobs_ready, 0.1) == 0, "no NOTIFY when nothing was promoted"


def test_promote_due_jobs_works_in_bounded_batches_earliest_first(
    engine: Engine, maintenance: BlockingDatabase
) -> None:
    ids = submit(engine, 5, scheduled_in=LATER)
    execute(
        engine,
        "UPDATE jobs SET run_at = now() - make_interval(secs => job_id) WHERE job_id = ANY(:ids)",
        ids=ids,
    )
    batches = [[job.job_id for job in maintenance.promote_due_jobs(limit=2)] for _ in range(4)]
    assert batches == [ids[4:2:-1], ids[2:0:-1], ids[:1], []]


def test_seconds_until_next_due_reads_the_earliest_pending_job(engine: Engine, maintenance: BlockingDatabase) -> None:
    assert maintenance.seconds_until_next_due() is None
    submit(engine, 1, scheduled_in=timedelta(seconds=60))
    submit(engine, 1, scheduled_in=timedelta(seconds=30))
    submit(engine, 1)  # READY: not waited for
    delay = maintenance.seconds_until_next_due()
    assert delay is not None and 28 < delay <= 30


def test_rescue_lost_jobs_requeues_fails_or_cancels_expired_leases_by_what_is_left(
    engine: Engine, maintenance: BlockingDatabase, jobs_ready: Any
) -> None:
    retry, used_up, cancelled, alive = submit(engine, 4, scheduled_in=LATER)
    make_processing(engine, retry, attempts=1)
    make_processing(engine, used_up, attempts=3, owner="executor-b")
    make_processing(engine, cancelled, attempts=1, cancel_requested=True)
    make_processing(engine, alive, attempts=1, expired=False)

    rescued = {job.job_id: job for job in maintenance.rescue_lost_jobs(limit=100)}

    assert {job_id: job.status for job_id, job in rescued.items()} == {
        retry: JobStatus.READY,
        used_up: JobStatus.FAILED,
        cancelled: JobStatus.CANCELLED,
    }
    rows = jobs(engine)
    assert rows[retry].attempts == 1, "the lost attempt counts"
    assert rows[retry].finished_at is None
    assert rows[retry].run_at > datetime.now(timezone.utc) - timedelta(seconds=5)
    assert rows[retry].error_message == "lease expired: executor executor-a stopped heartbeating (attempt 1 of 3)"
    assert rows[used_up].error_message == ("lease expired: executor executor-b stopped heartbeating (attempt 3 of 3)")
    assert rows[used_up].finished_at is not None
    assert rows[cancelled].error_message == "cancelled by request"
    assert rows[cancelled].finished_at is not None
    for job_id in (retry, used_up, cancelled):
        assert (rows[job_id].lease_owner, rows[job_id].lease_token, rows[job_id].lease_expires_at) == (None, None, None)
    assert rows[alive].status == "PROCESSING" and rows[alive].lease_owner == "executor-a"
    assert {job.reason for job in rescued.values()} == {"lease_expired"}
    assert notifications(jobs_ready) == 1
    # Each rescued lease is an attempt LOST, recorded with the executor that held it; the live one runs on.
    for job_id, owner in ((retry, "executor-a"), (used_up, "executor-b"), (cancelled, "executor-a")):
        (lost,) = maintenance.list_job_attempts(job_id)
        assert (lost.attempt, lost.outcome, lost.executor_id) == (1, AttemptOutcome.LOST, owner)
        assert lost.started_at is not None and lost.finished_at is not None and lost.started_at < lost.finished_at
    assert [a.outcome for a in maintenance.list_job_attempts(alive)] == [AttemptOutcome.RUNNING]
    assert maintenance.rescue_lost_jobs(limit=100) == []


def test_rescue_lost_jobs_takes_a_dead_executors_jobs_and_never_a_live_ones(
    engine: Engine, maintenance: BlockingDatabase
) -> None:
    """An executor is dead when its liveness lock is gone AND it has been silent past its liveness_seconds,
    silence seen wholly on the rescuing connection; jobs leased within liveness_seconds are left alone.
    Every lease here is far from expiring."""
    held = maintenance.listen_jobs_ready("executor-locked")  # its liveness lock, as an executor holds it
    # The connection the rescue runs on begins now: only silence after this counts.
    assert maintenance.rescue_lost_jobs(limit=100) == []
    started = datetime.now(timezone.utc)
    owners = (
        "executor-dead",
        "executor-dead",
        "executor-locked",
        "executor-heard",
        "executor-leases-only",
        "executor-seen-before",
    )
    dead_old, dead_new, locked, heard, leases_only, seen_before = ids = submit(engine, len(owners), scheduled_in=LATER)
    for job_id, owner in zip(ids, owners, strict=True):
        make_processing(engine, job_id, attempts=1, expired=False, owner=owner)
        liveness = None if owner == "executor-leases-only" else 0.5
        maintenance.register_executor(ExecutorRecord(owner, "host", 1, "0.1.0", ("echo",), 1, 1, started), 60, liveness)
    execute(
        engine,
        "UPDATE executors SET last_seen_at = now() - interval '1 hour' WHERE executor_id = 'executor-seen-before'",
    )
    time.sleep(1.0)  # everyone silent for twice their liveness_seconds, but:
    maintenance.register_executor(ExecutorRecord(owners[3], "host", 1, "0.1.0", ("echo",), 1, 1, started), 60, 0.5)
    execute(engine, "UPDATE jobs SET started_at = now() WHERE job_id = :job_id", job_id=dead_new)  # just leased

    try:
        (rescued,) = maintenance.rescue_lost_jobs(limit=100)
        assert (rescued.job_id, rescued.status, rescued.reason) == (dead_old, JobStatus.READY, "executor_died")
        assert rescued.error_message == (
            "executor executor-dead died: its database session ended and it stopped heartbeating (attempt 1 of 3)"
        )
        (lost,) = maintenance.list_job_attempts(dead_old)
        assert (lost.outcome, lost.executor_id) == (AttemptOutcome.LOST, "executor-dead")
        assert lost.error_message is not None and lost.error_message.startswith("the executor died: "), lost
        rows = jobs(engine)
        assert rows[dead_old].status == "READY" and rows[dead_old].lease_owner is None
        assert {rows[job_id].status for job_id in (dead_new, locked, heard, leases_only, seen_before)} == {"PROCESSING"}
    finally:
        held.close()  # the locked executor's session ends: its lock goes with it
    # ...once its backend has exited, which the client's close does not wait for.
    wait_until(lambda: not advisory_lock_holders(engine), STARTUP_TIMEOUT, what="the closed session's lock to go")

    (rescued,) = maintenance.rescue_lost_jobs(limit=100)
    assert (rescued.job_id, rescued.reason) == (locked, "executor_died")
    for owner in set(owners):
        maintenance.unregister_executor(owner)


def test_rescue_lost_jobs_is_bounded(engine: Engine, maintenance: BlockingDatabase) -> None:
    for job_id in submit(engine, 3, scheduled_in=LATER):
        make_processing(engine, job_id, attempts=1)
    assert [len(maintenance.rescue_lost_jobs(limit=2)) for _ in range(3)] == [2, 1, 0]


def test_rescue_lost_jobs_ignores_silence_older_than_the_schedulers_last_break(
    engine: Engine, maintenance: BlockingDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a pooler in session mode a reconnecting scheduler may be handed an old server session, whose
    start shows no break; the gateway's record of its last call that found the database unavailable does."""
    assert maintenance.rescue_lost_jobs(limit=100) == []  # the rescuing connection begins
    (job_id,) = submit(engine, 1, scheduled_in=LATER)
    make_processing(engine, job_id, attempts=1, expired=False, owner="executor-dead")
    record = ExecutorRecord("executor-dead", "host", 1, "0.1.0", ("echo",), 1, 1, datetime.now(timezone.utc))
    maintenance.register_executor(record, 60, 0.5)
    time.sleep(1.0)  # silent for twice its liveness_seconds

    monkeypatch.setattr(maintenance.db, "unbroken_seconds", lambda: 0.2)  # a call just found the database away
    assert maintenance.rescue_lost_jobs(limit=100) == []
    monkeypatch.undo()
    (rescued,) = maintenance.rescue_lost_jobs(limit=100)
    assert (rescued.job_id, rescued.reason) == (job_id, "executor_died")
    maintenance.unregister_executor("executor-dead")


def test_prune_finished_jobs_respects_each_retention_and_leaves_the_rest(
    engine: Engine, maintenance: BlockingDatabase
) -> None:
    ids = submit(engine, 8, scheduled_in=LATER)
    old_completed, new_completed, old_cancelled, new_failed, old_failed, old_completed_2 = ids[:6]
    pending, ready = ids[6], ids[7]
    make_finished(engine, old_completed, JobStatus.COMPLETED, days_ago=8)
    make_finished(engine, old_completed_2, JobStatus.COMPLETED, days_ago=9)
    make_finished(engine, new_completed, JobStatus.COMPLETED, days_ago=6)
    make_finished(engine, old_cancelled, JobStatus.CANCELLED, days_ago=8)
    make_finished(engine, new_failed, JobStatus.FAILED, days_ago=20)
    make_finished(engine, old_failed, JobStatus.FAILED, days_ago=31)
    execute(
        engine, "UPDATE jobs SET status = 'READY', created_at = now() - interval '90 days' WHERE job_id = :i", i=ready
    )

    # Two attempts of every job: they go with their job.
    execute(
        engine,
        "INSERT INTO job_attempts (job_id, attempt, finished_at, outcome) "
        "SELECT job_id, n, now(), 'FAILED' FROM jobs, generate_series(1, 2) AS n",
    )

    week, month = timedelta(days=7), timedelta(days=30)
    assert maintenance.prune_finished_jobs(JobStatus.COMPLETED, week, limit=1) == 1
    assert maintenance.prune_finished_jobs(JobStatus.COMPLETED, week, limit=1) == 1
    assert maintenance.prune_finished_jobs(JobStatus.COMPLETED, week, limit=1) == 0
    assert maintenance.prune_finished_jobs(JobStatus.CANCELLED, week, limit=10) == 1
    assert maintenance.prune_finished_jobs(JobStatus.FAILED, month, limit=10) == 1

    assert sorted(jobs(engine)) == sorted([new_completed, new_failed, pending, ready])
    with engine.connect() as conn:
        left = conn.execute(text("SELECT job_id, count(*) FROM job_attempts GROUP BY job_id")).all()
    assert dict(left) == dict.fromkeys([new_completed, new_failed, pending, ready], 2)
    with pytest.raises(ValueError):
        maintenance.prune_finished_jobs(JobStatus.PENDING, week, limit=10)


def real_counts(engine: Engine) -> dict[tuple[str, str], tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT type, status, count(*), sum(attempts) FROM jobs GROUP BY 1, 2"))
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def aggregate_counts(engine: Engine) -> dict[tuple[str, str], tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT type, status, sum(jobs), sum(attempts) FROM job_counts GROUP BY 1, 2 HAVING sum(jobs) <> 0")
        )
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def test_compact_job_counts_keeps_the_sums_while_writers_run(engine: Engine, maintenance: BlockingDatabase) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        # Inserts, status changes and deletes: every trigger appends deltas while compaction runs.
        rng = random.Random(7)
        try:
            while not stop.is_set():
                ids = submit(engine, rng.randint(1, 5), type=rng.choice(["a", "b", "c"]))
                execute(
                    engine,
                    "UPDATE jobs SET status = 'PROCESSING', attempts = attempts + 1 WHERE job_id = ANY(:ids)",
                    ids=ids[:2],
                )
                execute(engine, "UPDATE jobs SET status = 'COMPLETED' WHERE job_id = :i", i=ids[0])
                execute(engine, "DELETE FROM jobs WHERE job_id = :i", i=ids[-1])
        except BaseException as error:
            errors.append(error)

    writers = [threading.Thread(target=write) for _ in range(3)]
    for writer in writers:
        writer.start()
    folded = 0
    try:
        for _ in range(40):
            folded += maintenance.compact_job_counts(limit=50).folded
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert not errors
    assert folded > 0
    while maintenance.compact_job_counts(limit=50).folded == 50:
        pass
    maintenance.compact_job_counts(limit=10_000)

    assert aggregate_counts(engine) == real_counts(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM job_counts")).scalar_one()
    assert rows == len(real_counts(engine)), "one row per (type, status) after compaction"
    by_status = maintenance.count_jobs_by_status()
    assert sum(by_status.values()) == sum(count for count, _ in real_counts(engine).values())


@pytest.fixture
def locks(engine: Engine) -> Iterator[tuple[LeaderLock, LeaderLock]]:
    db = gateway(engine)
    first, second = db.leader_lock(), db.leader_lock()
    yield first, second
    for lock in (first, second):
        with contextlib.suppress(DatabaseUnavailable):
            db.unlock_scheduler_leader(lock)


def holds(engine: Engine, lock: LeaderLock) -> bool:
    """Whether ``lock`` is held, as the leader checks it: a broken session holds nothing."""
    try:
        return bool(gateway(engine).check_scheduler_leader(lock))
    except DatabaseUnavailable:
        return False


def terminate_lock_holders(engine: Engine) -> None:
    execute(
        engine,
        """
        SELECT pg_terminate_backend(pid) FROM pg_locks
        WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """,
    )


def test_leader_lock_has_one_holder_and_passes_on_when_its_connection_dies(
    engine: Engine, locks: tuple[LeaderLock, LeaderLock]
) -> None:
    first, second = locks
    db = gateway(engine)
    assert db.try_lock_scheduler_leader(first)
    assert db.try_lock_scheduler_leader(first), "re-entrant for its holder"
    assert not db.try_lock_scheduler_leader(second)
    assert holds(engine, first) and not holds(engine, second)

    terminate_lock_holders(engine)

    assert not holds(engine, first)
    assert db.try_lock_scheduler_leader(second)
    assert not db.try_lock_scheduler_leader(first), "the old holder reconnects as a standby"
    db.unlock_scheduler_leader(second)
    assert db.try_lock_scheduler_leader(first)


def test_listening_hears_jobs_scheduled_and_reports_a_broken_connection(engine: Engine) -> None:
    db = gateway(engine)
    listener = db.listen_jobs_scheduled()
    try:
        execute(engine, "SELECT pg_notify('jobs_scheduled', '')")
        assert select.select([listener], [], [], 2)[0]
        assert listener.drain() == 1

        execute(
            engine,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%LISTEN jobs_scheduled%'",
        )
        assert select.select([listener], [], [], 2)[0], "a broken connection makes the socket readable"
        with pytest.raises(DatabaseUnavailable):
            listener.drain()
        listener = db.listen_jobs_scheduled()
        execute(engine, "SELECT pg_notify('jobs_scheduled', '')")
        assert select.select([listener], [], [], 2)[0]
        assert listener.drain() == 1
    finally:
        listener.close()


def test_the_leader_session_probes_its_tcp_connection_so_a_vanished_host_frees_the_lock(
    engine: Engine, locks: tuple[LeaderLock, LeaderLock]
) -> None:
    first, _ = locks
    assert gateway(engine).try_lock_scheduler_leader(first)
    (lock_pid,) = advisory_lock_holders(engine)
    # The lock's own session is what is being checked, so reach into the lock for it.
    session = first.session.open()
    pid, idle, count = session.execute(
        text("SELECT pg_backend_pid(), current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_count')")
    ).one()
    assert (pid, idle, count) == (lock_pid, "5", "3")
