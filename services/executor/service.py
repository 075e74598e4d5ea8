"""The executor's lifecycle: wait for a usable database, run the loops, and drain on SIGTERM/SIGINT.

Loops (one asyncio task each, supervised by shared.runtime, all stopped by the shutdown sequence):

- listen_jobs_ready  LISTEN jobs_ready (shared.runtime.Listener)  -> leaser.notify()
                     and this executor's liveness lock               (crash detection)
- lease_jobs         lease_jobs, up to the free slots            -> runner.start(job)
                     (lease_limited_jobs for types with limits)
- runner             one attempt per job (timeout, cancel)       -> completer.add(outcome)
- complete_jobs      complete_jobs, batched                      -> jobs_completed_total...
- heartbeat_leases   heartbeat_leases / check_leases             -> runner.cancel() / runner.lose()
                     register_executor                             (the registry; crash detection)

Every statement is an operation of the database gateway (shared.database.Database).

The executor registers itself (register_executor) before its loops start and refreshes the record
with every heartbeat, and on every tick of the heartbeat loop while it holds leases: that is how the
scheduler tells it is alive when its liveness lock is gone (docs/reliability.md, crash detection). A
clean stop deletes the record (unregister_executor) once the drain is over, and only then closes the
session that holds the liveness lock.

Shutdown: stop leasing; let running jobs finish for ``shutdown_grace_seconds`` (a second signal cuts
the grace short); hand the unfinished leases back with release_leases (READY, attempt not counted);
write the remaining outcomes; exit 0. If the database is down throughout, the leases simply expire and
the scheduler rescues the jobs: nothing is lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata

from services.executor import metrics
from services.executor.completer import Completer
from services.executor.heartbeat import Heartbeat
from services.executor.leaser import Leaser, LimitedTypes
from services.executor.outcomes import BackoffPolicy
from services.executor.registry import HandlerRegistry
from services.executor.runner import Runner
from services.executor.settings import ExecutorSettings
from services.executor.telemetry import ExecutorTracing
from shared.database import Database
from shared.errors import DatabaseUnavailable, SchemaOutOfDate
from shared.executors import ExecutorRecord
from shared.jobs import JobStatus
from shared.runtime import Backoff, Listener, Shutdown, supervise, wait_for_schema, watch_loops

__all__ = ["EXIT_OK", "EXIT_SCHEMA_OUT_OF_DATE", "Executor", "executor_id"]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_SCHEMA_OUT_OF_DATE = 2
# Database threads: lease, complete, heartbeat/check and listen may each wait on PostgreSQL at once
# (the pool has one connection more, for the LISTEN session).
DATABASE_THREADS = 4
# At shutdown, how long handing leases back and writing the last outcomes may take; beyond that the
# scheduler's lease rescue takes over.
FINAL_WRITE_TIMEOUT_SECONDS = 10.0


def executor_id() -> str:
    """hostname-pid-random: unique per process, and says where to look when a lease is stuck."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _version() -> str:
    try:
        return metadata.version("jobservice")
    except metadata.PackageNotFoundError:
        return "unknown"


class Executor:
    """One executor process's loops, from start to a drained exit."""

    def __init__(
        self,
        settings: ExecutorSettings,
        registry: HandlerRegistry,
        types: Sequence[str],
        db: Database,
        tracing: ExecutorTracing | None = None,
    ):
        self.settings = settings
        # None unless spans are exported (configure_tracing): the runner then does no span work at all.
        self.tracing = tracing
        self.registry = registry
        self.types = list(types)
        self.db = db
        self.owner = executor_id()
        self.started_at = datetime.now(timezone.utc)
        # SIGTERM/SIGINT: drain gracefully; a second one: stop waiting for running jobs.
        self.shutdown = Shutdown()

    async def run(self) -> int:
        """Run until stopped; the process's exit code."""
        stop = self.shutdown.install().requested
        try:
            try:
                if not await wait_for_schema(self.db.check_schema, stop):
                    return EXIT_OK
            except SchemaOutOfDate as error:
                logger.error("%s", error.message)
                return EXIT_SCHEMA_OUT_OF_DATE
            await self._serve()
            return EXIT_OK
        finally:
            metrics.set_worker_up(False, self.types)

    async def _serve(self) -> None:
        settings = self.settings
        write_lock = asyncio.Lock()
        leaser: Leaser | None = None
        limited = LimitedTypes()

        def slot_freed() -> None:
            if leaser is not None:
                leaser.slot_freed()

        completer = Completer(
            self.db,
            self.owner,
            write_lock,
            settings.complete_batch_size,
            settings.complete_flush_seconds,
            on_flushed=slot_freed,
            limited_types=limited,
        )
        runner = Runner(
            self.registry,
            settings.concurrency,
            settings.max_abandoned_threads,
            settings.max_result_bytes,
            BackoffPolicy(settings.retry_backoff_base_seconds, settings.retry_backoff_cap_seconds),
            report=completer.add,
            on_slot_freed=slot_freed,
            tracing=self.tracing,
        )
        leaser = Leaser(
            self.db,
            runner,
            self.owner,
            self.types,
            settings.lease_seconds,
            settings.poll_interval_seconds,
            backlog=lambda: completer.backlog,
            # Stop leasing while outcomes pile up unwritten (the database is slow or down).
            max_backlog=max(4 * settings.complete_batch_size, 2 * settings.concurrency),
            limited=limited,
        )

        # Crash detection needs a session of our own: its liveness lock (on the LISTEN session) vanishes
        # with this process, and then silence past liveness_seconds is enough to take our jobs back.
        liveness = settings.liveness_seconds if settings.listens and settings.liveness_seconds > 0 else None

        async def register() -> None:
            record = self._record(runner.running_count)
            await self.db.register_executor(record, settings.lease_seconds, liveness)

        heartbeat = Heartbeat(
            self.db,
            write_lock,
            runner,
            completer,
            settings.lease_seconds,
            settings.heartbeat_interval_seconds,
            settings.cancel_check_interval_seconds,
            register=register,
        )
        # Set when leasing stops: ends the stuck-loop watch.
        leasing_stopped = asyncio.Event()
        # Set last of all: ends the LISTEN session, and the liveness lock on it with it, only once nothing
        # of ours is left for crash detection to take back.
        session_done = asyncio.Event()
        listener = Listener(
            "jobs_ready", functools.partial(self.db.listen_jobs_ready, self.owner if liveness else None), leaser.notify
        )

        completer_task = asyncio.create_task(supervise("complete_jobs", completer.run), name="complete_jobs")
        heartbeat_task = asyncio.create_task(supervise("heartbeat_leases", heartbeat.run), name="heartbeat_leases")
        leaser_task = asyncio.create_task(supervise("lease_jobs", leaser.run), name="lease_jobs")
        wakeup_task = (
            asyncio.create_task(
                supervise("listen_jobs_ready", lambda: listener.run(session_done)), name="listen_jobs_ready"
            )
            if settings.listens
            else None
        )
        watch_task = asyncio.create_task(watch_loops(leasing_stopped), name="watch_loops")
        await heartbeat.register_executor()  # before "started": a test or an operator may look at once
        metrics.set_worker_up(True, self.types)
        logger.info(
            "executor %s started: concurrency %d, types %s, %s, %s",
            self.owner,
            settings.concurrency,
            ",".join(self.types),
            "LISTEN jobs_ready" if settings.listens else "poll only (DATABASE_POOLER=transaction)",
            f"crash detection after {liveness:g} s of silence" if liveness else "crash detection by lease expiry only",
        )

        await self.shutdown.requested.wait()
        metrics.set_worker_up(False, self.types)
        loop = asyncio.get_running_loop()
        grace_ends = loop.time() + settings.shutdown_grace_seconds
        leaser.stop()
        leasing_stopped.set()
        # The lease loop may be in a statement: the jobs it leases are drained like the others. Wait for
        # it beyond a short grace too (it takes milliseconds): cancelling it would leave what it leases
        # PROCESSING, unseen, until the leases expire (a grace of 0 s did, under load).
        await _first_of(
            asyncio.shield(leaser_task),
            self.shutdown.forced.wait(),
            timeout=max(settings.shutdown_grace_seconds, FINAL_WRITE_TIMEOUT_SECONDS),
        )
        if runner.running_count:
            logger.info(
                "stopping: waiting up to %.0f s for %d running jobs",
                max(0.0, grace_ends - loop.time()),
                runner.running_count,
                extra={"count": runner.running_count},
            )
            await _first_of(runner.wait_idle(), self.shutdown.forced.wait(), timeout=max(0.0, grace_ends - loop.time()))
        if not leaser_task.done():
            # A lease statement outlived the grace (the database hangs): should it still lease jobs, they
            # expire unseen and the scheduler rescues them.
            leaser_task.cancel()
        # The grace is over: interrupt what still runs now, before anything else that may take time (closing
        # the LISTEN connection did, and jobs kept running past the grace meanwhile).
        leases = runner.interrupt_all()
        await _finish_task(watch_task, FINAL_WRITE_TIMEOUT_SECONDS)
        if leases:
            await self._release(write_lock, leases)
        await completer.close(FINAL_WRITE_TIMEOUT_SECONDS, completer_task)
        heartbeat.stop()
        await _finish_task(heartbeat_task, FINAL_WRITE_TIMEOUT_SECONDS)
        await self._unregister()
        session_done.set()
        if wakeup_task is not None:
            await _finish_task(wakeup_task, FINAL_WRITE_TIMEOUT_SECONDS)
        runner.shutdown_threads()
        if runner.abandoned_threads:
            logger.warning(
                "%d handler threads are still running; exiting without waiting for them",
                runner.abandoned_threads,
                extra={"count": runner.abandoned_threads},
            )
        logger.info("executor %s stopped", self.owner)

    def _record(self, running: int) -> ExecutorRecord:
        return ExecutorRecord(
            executor_id=self.owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=_version(),
            types=tuple(self.types),
            concurrency=self.settings.concurrency,
            running=running,
            started_at=self.started_at,
        )

    async def _unregister(self) -> None:
        """Leave the registry at once; should the database not answer, the record expires by itself."""
        try:
            await asyncio.wait_for(self.db.unregister_executor(self.owner), FINAL_WRITE_TIMEOUT_SECONDS)
        except (DatabaseUnavailable, asyncio.TimeoutError):
            logger.warning("could not remove this executor's record; it expires within its lease period")

    async def _release(self, write_lock: asyncio.Lock, leases: list[tuple[int, str]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINAL_WRITE_TIMEOUT_SECONDS
        backoff = Backoff(first=0.1, cap=2.0)
        while True:
            try:
                async with write_lock:
                    released = await self.db.release_leases(leases)
                break
            except Exception as error:
                if not isinstance(error, DatabaseUnavailable):
                    logger.exception("release_leases failed")
                if loop.time() + 0.1 >= deadline:
                    logger.error(
                        "could not hand %d leases back; the scheduler will rescue them when they expire",
                        len(leases),
                        extra={"count": len(leases)},
                    )
                    return
                await asyncio.sleep(min(backoff.next(), max(0.0, deadline - loop.time())))
        metrics.LEASES_RELEASED.inc(len(released))
        ready = sum(1 for status in released.values() if status is JobStatus.READY)
        logger.info(
            "handed %d unfinished jobs back (%d READY, %d CANCELLED as requested)",
            len(released),
            ready,
            len(released) - ready,
            extra={"count": len(released)},
        )


async def _finish_task(task: asyncio.Task[None], timeout: float) -> None:
    """Wait for a stopped loop to return; cancel it if it does not in time. Logs a crash, never raises."""
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except asyncio.TimeoutError:
        task.cancel()
    except Exception:
        logger.exception("loop %s failed", task.get_name())


async def _first_of(*awaitables: object, timeout: float) -> None:
    tasks = [asyncio.ensure_future(a) for a in awaitables]  # type: ignore[call-overload]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
