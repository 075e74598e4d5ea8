"""Running attempts: one per leased job, each with its timeout, cancellation and a slot of the concurrency.

How a handler runs depends on how it was registered (services/executor/registry.py):

- ``async def``: a task on the event loop. Timeout and cancel cancel the task.
- plain ``def``: a thread of the handler pool. A thread cannot be killed, so a sync handler past its
  timeout or cancel is *abandoned*: its context says ``cancelled``, its slot is freed at once, and its
  late result is discarded when the thread finally returns. The pool has ``max_abandoned_threads``
  threads beyond the concurrency for such stragglers; past that allowance each straggler keeps holding a
  slot, so a handler that hangs forever can slow the executor down but never grow its threads unbounded.
- plain ``def`` registered ``inline=True``: called right away on the event loop, for handlers that take
  microseconds (echo); no task, no thread, no timer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.thread
import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from opentelemetry.trace import Span
from prometheus_client import Histogram

from services.executor import metrics
from services.executor.context import JobContext
from services.executor.errors import PermanentError
from services.executor.outcomes import (
    BackoffPolicy,
    InvalidResult,
    cancelled,
    completed,
    describe_error,
    encode_result,
    failed,
)
from services.executor.registry import HandlerRegistry, Mode, Registration
from services.executor.telemetry import ExecutorTracing, NoTracing, job_log_fields
from shared.database import JobOutcome, LeasedJob
from shared.jobs import JobStatus
from shared.telemetry import JOB_TYPE_LABEL, TRACEBACK_FIELD

__all__ = ["HandlerAborted", "Runner"]

logger = logging.getLogger(__name__)

ReportOutcome = Callable[[LeasedJob, JobOutcome], None]


# Where the frames that call a handler live: a failed attempt's traceback starts below them.
_PLUMBING_FILES = frozenset({__file__, concurrent.futures.thread.__file__})


class HandlerAborted(Exception):
    """A handler raised SystemExit or KeyboardInterrupt: a failure of the job, not of the executor."""


class Attempt:
    """One running attempt of a leased job."""

    __slots__ = (
        "abandoned",
        "context",
        "duration",
        "finished",
        "job",
        "span",
        "started",
        "task",
        "thread_future",
        "timer",
    )

    def __init__(self, job: LeasedJob, context: JobContext, started: float, duration: Histogram, span: Span) -> None:
        self.job = job
        self.context = context
        self.started = started
        self.duration = duration
        self.span = span
        self.task: asyncio.Future[Any] | None = None
        self.thread_future: concurrent.futures.Future[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None
        # Set once the attempt's fate is decided (done, timed out, cancelled, lost, interrupted); whatever
        # happens to the handler afterwards is ignored.
        self.finished = False
        self.abandoned = False


class Runner:
    """Starts attempts and decides each one's outcome, which goes to ``report``."""

    def __init__(
        self,
        registry: HandlerRegistry,
        concurrency: int,
        max_abandoned_threads: int,
        max_result_bytes: int,
        backoff: BackoffPolicy,
        report: ReportOutcome,
        on_slot_freed: Callable[[], None],
        tracing: ExecutorTracing | None = None,
    ) -> None:
        self._registry = registry
        # NoTracing unless spans are exported: then no span work at all happens per job.
        self._tracing = tracing or NoTracing()
        self._concurrency = concurrency
        self._max_abandoned = max_abandoned_threads
        self._max_result_bytes = max_result_bytes
        self._backoff = backoff
        self._report = report
        self._on_slot_freed = on_slot_freed
        self._running: dict[int, Attempt] = {}
        self._abandoned_threads = 0
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop = asyncio.get_running_loop()
        self._histograms: dict[str, tuple[Histogram, Histogram]] = {}
        self._debug = logger.isEnabledFor(logging.DEBUG)
        # Read when /metrics is scraped, rather than updated for every job.
        metrics.JOBS_RUNNING.set_function(lambda: len(self._running))
        metrics.ABANDONED_THREADS.set_function(lambda: self._abandoned_threads)

    # -- what the other loops ask ------------------------------------------------------------------

    def free_slots(self) -> int:
        """How many more jobs may start now."""
        overdrawn = max(0, self._abandoned_threads - self._max_abandoned)
        return max(0, self._concurrency - len(self._running) - overdrawn)

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def abandoned_threads(self) -> int:
        return self._abandoned_threads

    def running_leases(self) -> list[tuple[int, str]]:
        """(job_id, lease_token) of every running attempt."""
        return [(job_id, attempt.job.lease_token) for job_id, attempt in self._running.items()]

    def pending_progress(self) -> list[tuple[int, str, int, str]]:
        """(job_id, lease_token, percent, message) of the running attempts that reported progress."""
        reports = []
        for job_id, attempt in self._running.items():
            progress = attempt.context.take_progress()
            if progress is not None and not attempt.finished:
                reports.append((job_id, attempt.job.lease_token, *progress))
        return reports

    def is_running(self, job_id: int, lease_token: str | None = None) -> bool:
        """Whether an attempt of ``job_id`` (under ``lease_token``, when given) is running."""
        attempt = self._running.get(job_id)
        return attempt is not None and (lease_token is None or attempt.job.lease_token == lease_token)

    async def wait_idle(self) -> None:
        """Return once no attempt is running."""
        await self._idle.wait()

    # -- starting ----------------------------------------------------------------------------------

    def start(self, job: LeasedJob) -> None:
        """Start an attempt of ``job``; its outcome is reported when it ends."""
        if job.job_id in self._running:
            # We leased a job we still run: our earlier lease was taken from us (it expired and the job
            # was rescued) before the heartbeat noticed. The old attempt's result no longer counts.
            self.lose(job.job_id)
        queue_wait, duration = self._histograms_for(job.type)
        queue_wait.observe(max(0.0, job.queue_wait_seconds))
        span = self._tracing.start_attempt(job)
        if self._debug:
            logger.debug("job started", extra=job_log_fields(job))
        registration = self._registry.get(job.type)
        if registration is None or not isinstance(job.payload, dict):
            if registration is None:
                # Only registered types are leased; this guards against a registry changed at run time.
                message = f"no handler for job type {job.type!r}"
            else:
                message = f"payload must be a JSON object, got {type(job.payload).__name__}"
            outcome = self._failure(job, message, retryable=False)
            self._tracing.end_attempt(span, outcome)
            self._report_outcome(job, outcome)
            return
        context = JobContext(
            job.job_id, job.type, job.attempt, job.max_attempts, job.timeout_seconds, traceparent=job.traceparent
        )
        loop = self._loop
        if registration.mode is Mode.INLINE:
            started = loop.time()
            outcome = self._tracing.run_in(span, self._call_inline, job, registration, context)
            duration.observe(loop.time() - started)
            self._tracing.end_attempt(span, outcome)
            self._report_outcome(job, outcome)
            return
        attempt = Attempt(job, context, loop.time(), duration, span)
        self._running[job.job_id] = attempt
        self._idle.clear()
        try:
            self._tracing.run_in(span, self._launch, attempt, registration)
        except Exception as error:  # e.g. the thread pool refused work; never leave the slot taken
            logger.exception("could not start the handler", extra=job_log_fields(job))
            self._finish(
                attempt, self._failure(job, f"could not start the handler: {describe_error(error)}", error=error)
            )
            return
        attempt.timer = loop.call_later(job.timeout_seconds, self._time_out, attempt)

    def _launch(self, attempt: Attempt, registration: Registration) -> None:
        job, context = attempt.job, attempt.context
        if registration.mode is Mode.ASYNC:
            task = asyncio.ensure_future(_call_async(registration.function, job.payload, context))
            attempt.task = task
            task.add_done_callback(lambda future: self._on_task_done(attempt, future))
            return
        if self._threads is None:
            self._threads = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._concurrency + self._max_abandoned, thread_name_prefix="handler"
            )
        thread_future = self._threads.submit(
            self._tracing.in_thread(_call_in_thread),
            registration.function,
            job.payload,
            context,
            self._max_result_bytes,
        )
        attempt.thread_future = thread_future
        thread_future.add_done_callback(lambda future: self._from_thread(attempt, future))

    def _call_inline(self, job: LeasedJob, registration: Registration, context: JobContext) -> JobOutcome:
        try:
            result = registration.function(job.payload, context)
        except PermanentError as error:
            return self._failure(job, describe_error(error), retryable=False, error=error)
        except BaseException as error:  # SystemExit from a handler must not stop the executor either
            return self._failure(job, describe_error(error), error=error)
        return self._judge(job, result)

    # -- endings -----------------------------------------------------------------------------------

    def _from_thread(self, attempt: Attempt, future: concurrent.futures.Future[Any]) -> None:
        # Runs in the handler's thread: hop onto the event loop.
        # RuntimeError: the loop is closed, the executor is exiting and the result is no longer wanted.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._on_thread_done, attempt, future)

    def _on_thread_done(self, attempt: Attempt, future: concurrent.futures.Future[Any]) -> None:
        if attempt.finished:
            if attempt.abandoned:
                attempt.abandoned = False
                self._abandoned_threads -= 1
                logger.info("an abandoned handler thread returned; result discarded", extra=job_log_fields(attempt.job))
                self._on_slot_freed()
            return
        self._decide(attempt, future)

    def _on_task_done(self, attempt: Attempt, future: asyncio.Future[Any]) -> None:
        if attempt.finished:
            if not future.cancelled():
                future.exception()  # retrieved, so asyncio does not log "exception never retrieved"
            return
        self._decide(attempt, future)

    def _decide(self, attempt: Attempt, future: asyncio.Future[Any] | concurrent.futures.Future[Any]) -> None:
        job = attempt.job
        try:
            if future.cancelled():
                outcome = self._failure(job, "the handler was cancelled")
            elif isinstance(error := future.exception(), InvalidResult):
                outcome = self._failure(job, str(error), retryable=False)
            elif error is not None:
                retryable = not isinstance(error, PermanentError)
                outcome = self._failure(job, describe_error(error), retryable=retryable, error=error)
            else:
                outcome = self._judge(job, future.result())
        except Exception as error:  # never leave a slot taken because deciding went wrong
            logger.exception("could not judge the handler's outcome", extra=job_log_fields(job))
            outcome = self._failure(job, f"executor error: {describe_error(error)}")
        self._finish(attempt, outcome)

    def _judge(self, job: LeasedJob, result: Any) -> JobOutcome:
        """The outcome of a handler that returned ``result``."""
        if isinstance(result, EncodedResult):
            return completed(job, result.json)
        try:
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise InvalidResult("a sync handler returned an awaitable; declare the handler `async def`")
            return completed(job, encode_result(result, self._max_result_bytes))
        except InvalidResult as error:
            return self._failure(job, str(error), retryable=False)

    def _time_out(self, attempt: Attempt) -> None:
        if attempt.finished:
            return
        job = attempt.job
        self._stop(attempt)
        outcome = self._failure(job, f"timed out after {job.timeout_seconds} s", timed_out=True)
        self._finish(attempt, outcome, "timed_out")

    def cancel(self, job_id: int) -> None:
        """A cancel was requested for a running job: stop it and report CANCELLED; late results are discarded."""
        attempt = self._running.get(job_id)
        if attempt is None or attempt.finished:
            return
        self._stop(attempt)
        logger.info("job cancelled while running", extra=job_log_fields(attempt.job))
        self._finish(attempt, cancelled(attempt.job))

    def lose(self, job_id: int) -> None:
        """The lease was taken over (rescued, re-leased): stop the job and report nothing."""
        attempt = self._running.get(job_id)
        if attempt is None or attempt.finished:
            return
        self._stop(attempt)
        metrics.LEASES_LOST.inc()
        logger.warning("lease lost while running; the result will be discarded", extra=job_log_fields(attempt.job))
        self._finish(attempt, None, "lost")

    def interrupt_all(self) -> list[tuple[int, str]]:
        """Stop every running attempt without an outcome (shutdown); return their leases to hand back."""
        leases = []
        for attempt in list(self._running.values()):
            if attempt.finished:
                continue
            self._stop(attempt)
            leases.append((attempt.job.job_id, attempt.job.lease_token))
            logger.info("job interrupted by shutdown; its lease is handed back", extra=job_log_fields(attempt.job))
            self._finish(attempt, None, "interrupted")
        return leases

    def _stop(self, attempt: Attempt) -> None:
        attempt.finished = True
        attempt.context.cancel()
        if attempt.task is not None:
            attempt.task.cancel()
        elif (
            attempt.thread_future is not None
            and not attempt.thread_future.cancel()  # False: a thread already runs it
            and not attempt.thread_future.done()
        ):
            attempt.abandoned = True
            self._abandoned_threads += 1

    def _finish(self, attempt: Attempt, outcome: JobOutcome | None, how: str | None = None) -> None:
        """The attempt is over: free its slot and report ``outcome`` (None: nothing to write).

        ``how`` names an ending the outcome's status does not tell (timed_out, lost, interrupted).
        """
        attempt.finished = True
        if attempt.timer is not None:
            attempt.timer.cancel()
        job = attempt.job
        if self._running.get(job.job_id) is attempt:
            del self._running[job.job_id]
        if not self._running:
            self._idle.set()
        attempt.duration.observe(self._loop.time() - attempt.started)
        self._tracing.end_attempt(attempt.span, outcome, how)
        if outcome is not None:
            self._report_outcome(job, outcome)
        self._on_slot_freed()

    def _report_outcome(self, job: LeasedJob, outcome: JobOutcome) -> None:
        if outcome.error_message is not None and outcome.status is not JobStatus.CANCELLED:
            fields = job_log_fields(job)
            if outcome.traceback is not None:
                fields[TRACEBACK_FIELD] = outcome.traceback  # both log formats print it
            logger.warning(
                "job attempt failed (%s): %s",
                "will retry" if outcome.status is JobStatus.PENDING else "final",
                outcome.error_message,
                extra=fields,
            )
        elif self._debug:
            logger.debug("job attempt ended: %s", outcome.status.value, extra=job_log_fields(job))
        self._report(job, outcome)

    def _failure(
        self,
        job: LeasedJob,
        message: str,
        retryable: bool = True,
        error: BaseException | None = None,
        timed_out: bool = False,
    ) -> JobOutcome:
        return failed(
            job,
            message,
            retryable=retryable,
            backoff=self._backoff,
            error=error,
            skip_files=_PLUMBING_FILES,
            timed_out=timed_out,
        )

    def _histograms_for(self, job_type: str) -> tuple[Histogram, Histogram]:
        # Cached: looking a labelled child up costs more than observing it.
        children = self._histograms.get(job_type)
        if children is None:
            label = JOB_TYPE_LABEL(job_type)
            children = (metrics.JOB_QUEUE_WAIT.labels(label), metrics.JOB_DURATION.labels(label))
            self._histograms[job_type] = children
        return children

    def shutdown_threads(self) -> None:
        """Let go of the thread pool without waiting for abandoned threads."""
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)


class EncodedResult(NamedTuple):
    """A result already checked and encoded as JSON (in the handler's thread, off the event loop)."""

    json: str


def _call_in_thread(
    function: Callable[..., Any], payload: dict[str, Any], context: JobContext, max_result_bytes: int
) -> EncodedResult:
    result = function(payload, context)
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise InvalidResult("a sync handler returned an awaitable; declare the handler `async def`")
    # Encoding a big result takes a while: better here than on the event loop, which all jobs share.
    return EncodedResult(encode_result(result, max_result_bytes))


async def _call_async(function: Callable[..., Any], payload: dict[str, Any], context: JobContext) -> Any:
    try:
        result = function(payload, context)
        if inspect.isawaitable(result):
            result = await result
        return result
    except (SystemExit, KeyboardInterrupt) as error:
        # Left alone, these would propagate out of the event loop and stop the whole executor.
        raise HandlerAborted(f"handler raised {type(error).__name__}: {error}") from error
