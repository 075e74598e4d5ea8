"""The executor's lifecycle: wait for a usable database, run the loops, and drain on SIGTERM/SIGINT.

Loops (one asyncio task each, all stopped by the shutdown sequence):

- wakeup     LISTEN jobs_ready                       -> leaser.notify()
- leaser     lease_jobs, up to the free slots        -> runner.start(job)
             (lease_limited_jobs for types with limits)
- runner     one attempt per job (timeout, cancel)   -> completer.add(outcome)
- completer  complete_jobs, batched                  -> jobs_completed_total...
- heartbeat  heartbeat_leases / check_leases         -> runner.cancel() / runner.lose()

Shutdown: stop leasing; let running jobs finish for ``shutdown_grace_seconds`` (a second signal cuts
the grace short); hand the unfinished leases back with release_leases (READY, attempt not counted);
write the remaining outcomes; exit 0. If the database is down throughout, the leases simply expire and
the scheduler rescues the jobs: nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
from collections.abc import Sequence

from services.executor import metrics
from services.executor.completer import Completer
from services.executor.heartbeat import Heartbeat
from services.executor.leaser import Leaser, LimitedTypes
from services.executor.loops import DatabaseCalls, RetryBackoff, sleep_or_stop, supervise
from services.executor.outcomes import BackoffPolicy
from services.executor.registry import HandlerRegistry
from services.executor.runner import Runner
from services.executor.settings import ExecutorSettings
from services.executor.telemetry import ExecutorTracing
from services.executor.wakeup import Wakeup
from shared.database.queue import JobQueue
from shared.database.schema import check_schema
from shared.errors import DatabaseUnavailable, SchemaOutOfDate
from shared.jobs import JobStatus

__all__ = ["EXIT_OK", "EXIT_SCHEMA_OUT_OF_DATE", "Executor", "executor_id"]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_SCHEMA_OUT_OF_DATE = 2
# Database threads: lease, complete, heartbeat/check and listen may each wait on PostgreSQL at once.
DATABASE_THREADS = 4
# At shutdown, how long handing leases back and writing the last outcomes may take; beyond that the
# scheduler's lease rescue takes over.
FINAL_WRITE_TIMEOUT_SECONDS = 10.0


def executor_id() -> str:
    """hostname-pid-random: unique per process, and says where to look when a lease is stuck."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Executor:
    """One executor process's loops, from start to a drained exit."""

    def __init__(
        self,
        settings: ExecutorSettings,
        registry: HandlerRegistry,
        types: Sequence[str],
        queue: JobQueue,
        tracing: ExecutorTracing | None = None,
    ):
        self.settings = settings
        # None unless spans are exported (configure_tracing): the loops then skip span work entirely.
        self.tracing = tracing
        self.registry = registry
        self.types = list(types)
        self.queue = queue
        self.owner = executor_id()
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()

    def request_stop(self) -> None:
        """First call: drain gracefully. Second call: stop waiting for running jobs."""
        if self._stop_requested.is_set():
            if not self._force.is_set():
                logger.warning("second stop signal: handing running jobs back now")
            self._force.set()
        self._stop_requested.set()

    async def run(self) -> int:
        """Run until stopped; the process's exit code."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        database = DatabaseCalls(DATABASE_THREADS)
        try:
            if not await self._wait_for_schema(database):
                return EXIT_SCHEMA_OUT_OF_DATE
            if self._stop_requested.is_set():
                return EXIT_OK
            await self._serve(database)
            return EXIT_OK
        finally:
            database.close()
            metrics.WORKER_UP.set(0)

    async def _wait_for_schema(self, database: DatabaseCalls) -> bool:
        """True once the schema is current; False (logged) when it is behind. Waits out an outage."""
        backoff = RetryBackoff(first=0.2, cap=5.0)
        while not self._stop_requested.is_set():
            try:
                await database.call("check_schema", check_schema, self.queue.engine)
                return True
            except SchemaOutOfDate as error:
                logger.error("%s", error.message)
                return False
            except DatabaseUnavailable:
                pass  # logged by DatabaseCalls
            await sleep_or_stop(self._stop_requested, backoff.next())
        return True

    async def _serve(self, database: DatabaseCalls) -> None:
        settings = self.settings
        write_lock = asyncio.Lock()
        leaser: Leaser | None = None
        limited = LimitedTypes()

        def slot_freed() -> None:
            if leaser is not None:
                leaser.slot_freed()

        completer = Completer(
            self.queue,
            database,
            write_lock,
            settings.complete_batch_size,
            settings.complete_flush_seconds,
            on_flushed=slot_freed,
            tracing=self.tracing,
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
            self.queue,
            database,
            runner,
            self.owner,
            self.types,
            settings.lease_seconds,
            settings.poll_interval_seconds,
            backlog=lambda: completer.backlog,
            # Stop leasing while outcomes pile up unwritten (the database is slow or down).
            max_backlog=max(4 * settings.complete_batch_size, 2 * settings.concurrency),
            tracing=self.tracing,
            limited=limited,
        )
        heartbeat = Heartbeat(
            self.queue,
            database,
            write_lock,
            runner,
            completer,
            settings.lease_seconds,
            settings.heartbeat_interval_seconds,
            settings.cancel_check_interval_seconds,
        )
        wakeup = None if settings.poll_only else Wakeup(self.queue, database, leaser.notify)

        completer_task = asyncio.create_task(supervise("completer", completer.run), name="completer")
        heartbeat_task = asyncio.create_task(supervise("heartbeat", heartbeat.run), name="heartbeat")
        leaser_task = asyncio.create_task(supervise("leaser", leaser.run), name="leaser")
        wakeup_task = asyncio.create_task(supervise("wakeup", wakeup.run), name="wakeup") if wakeup else None
        metrics.WORKER_UP.set(1)
        logger.info(
            "executor %s started: concurrency %d, types %s, %s",
            self.owner,
            settings.concurrency,
            ",".join(self.types),
            "poll only" if settings.poll_only else "LISTEN jobs_ready",
        )

        await self._stop_requested.wait()
        metrics.WORKER_UP.set(0)
        loop = asyncio.get_running_loop()
        grace_ends = loop.time() + settings.shutdown_grace_seconds
        leaser.stop()
        if wakeup is not None:
            wakeup.stop()
        # The lease loop may be in a statement: the jobs it leases are drained like the others. Wait for
        # it beyond a short grace too (it takes milliseconds): cancelling it would leave what it leases
        # PROCESSING, unseen, until the leases expire (a grace of 0 s did, under load).
        await _first_of(
            asyncio.shield(leaser_task),
            self._force.wait(),
            timeout=max(settings.shutdown_grace_seconds, FINAL_WRITE_TIMEOUT_SECONDS),
        )
        if runner.running_count:
            logger.info(
                "stopping: waiting up to %.0f s for %d running jobs",
                max(0.0, grace_ends - loop.time()),
                runner.running_count,
                extra={"count": runner.running_count},
            )
            await _first_of(runner.wait_idle(), self._force.wait(), timeout=max(0.0, grace_ends - loop.time()))
        if not leaser_task.done():
            # A lease statement outlived the grace (the database hangs): should it still lease jobs, they
            # expire unseen and the scheduler rescues them.
            leaser_task.cancel()
        # The grace is over: interrupt what still runs now, before anything else that may take time (closing
        # the LISTEN connection did, and jobs kept running past the grace meanwhile).
        leases = runner.interrupt_all()
        if wakeup_task is not None:
            await _finish_task(wakeup_task, FINAL_WRITE_TIMEOUT_SECONDS)
        if leases:
            await self._release(database, write_lock, leases)
        await completer.close(FINAL_WRITE_TIMEOUT_SECONDS, completer_task)
        heartbeat.stop()
        await _finish_task(heartbeat_task, FINAL_WRITE_TIMEOUT_SECONDS)
        runner.shutdown_threads()
        if runner.abandoned_threads:
            logger.warning(
                "%d handler threads are still running; exiting without waiting for them",
                runner.abandoned_threads,
                extra={"count": runner.abandoned_threads},
            )
        logger.info("executor %s stopped", self.owner)

    async def _release(self, database: DatabaseCalls, write_lock: asyncio.Lock, leases: list[tuple[int, str]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINAL_WRITE_TIMEOUT_SECONDS
        backoff = RetryBackoff(first=0.1, cap=2.0)
        while True:
            try:
                async with write_lock:
                    released = await database.call("release_leases", self.queue.release_leases, leases)
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
