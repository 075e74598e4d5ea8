"""Running a handler in-process, without a database or a service: for the tests of your own handlers.

    import my_handlers  # registers its handlers, as the executor's --handlers would
    from services.executor.testing import JobStatus, run_handler

    def test_resize_image():
        run = run_handler("resize_image", {"url": "https://example.com/cat.png"})
        assert run.status is JobStatus.COMPLETED
        assert run.result == {"width": 640}

    def test_resize_image_needs_a_url():
        run = run_handler("resize_image", {})
        assert run.status is JobStatus.FAILED and "payload.url" in run.error_message

The attempt runs through the executor's own ``Runner``, so everything but the database is what a real
executor does: the payload goes through JSON as it would through the jobs table, a typed handler gets it
validated (a bad payload is FAILED at once, naming each field), a plain ``def`` runs in a thread and an
``async def`` on the event loop, with a real ``JobContext`` (attempt numbers, deadline, cancellation,
progress), the timeout, and the same mapping of exceptions and return values to outcomes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from services.executor.context import JobContext
from services.executor.outcomes import BackoffPolicy
from services.executor.payloads import jsonable
from services.executor.registry import DeclaredJobType, HandlerRegistry, Registration, default_registry
from services.executor.runner import Runner
from services.executor.settings import ExecutorSettings
from shared.database import JobOutcome, LeasedJob
from shared.jobs import JobStatus

__all__ = ["HandlerRun", "JobStatus", "run_handler", "run_handler_async"]

# The job type a handler function that no registry knows runs under.
UNREGISTERED_TYPE = "handler_under_test"
# How often the progress of the running attempt is sampled (the executor stores it about once a second).
PROGRESS_SAMPLE_SECONDS = 0.01
_LEASE_TOKEN = "run-handler"
P = ParamSpec("P")
R = TypeVar("R")
_PRIORITY = 5


@dataclass(frozen=True)
class HandlerRun:
    """How the attempt ended, as the executor would have written it to the job.

    ``status`` is COMPLETED (``result`` holds the stored JSON object), PENDING (a retryable failure: the
    job would run again after ``retry_delay`` seconds), FAILED (a PermanentError, a bad payload or result,
    or the last attempt failed) or CANCELLED (``cancel_after``). ``error_message`` is the job's
    ``error_message``; ``progress`` the (percent, message) reports, sampled every few milliseconds and
    once at the end (the executor stores the latest about once a second: of reports made in a tight loop,
    only some are seen).
    """

    job_type: str
    status: JobStatus
    result: dict[str, Any] | None = None
    error_message: str | None = None
    retry_delay: float | None = None
    progress: list[tuple[int, str]] = field(default_factory=list)

    @property
    def will_retry(self) -> bool:
        """True when the executor would run the job again."""
        return self.status is JobStatus.PENDING


async def run_handler_async(
    handler: str | DeclaredJobType | Callable[..., Any],
    payload: Any = None,
    *,
    attempt: int = 1,
    max_attempts: int = 3,
    timeout_seconds: int = 300,
    cancel_after: float | None = None,
    job_id: int = 1,
    registry: HandlerRegistry | None = None,
) -> HandlerRun:
    """Run one attempt of a job in this process and return how it ended (``run_handler`` from plain
    code, ``await run_handler_async`` from code already running an event loop).

    Args:
        handler: a registered job type (its name, or a declared ``JobDefinition``), or a handler function (its
            own registration is used when it has one; otherwise it runs as plain ``def``/``async def``).
        payload: the job's payload: a dict, a pydantic model or a dataclass instance (default ``{}``).
        attempt, max_attempts: which attempt this is: a retryable failure of the last one is FAILED.
        timeout_seconds: the job's timeout: past it the attempt fails with "timed out".
        cancel_after: cancel the job this many seconds after the start, as a cancel request would.
        job_id: what ``ctx.job_id`` says.
        registry: where to look the job type up (default: the registry ``@handler`` fills).
    """
    registration = _registration_of(handler, default_registry if registry is None else registry)
    job_type = registration.job_type
    contexts: list[JobContext] = []

    def call(payload: Any, ctx: JobContext) -> Any:
        contexts.append(ctx)  # the attempt's context, to read its progress from
        return registration.function(payload, ctx)

    registry = HandlerRegistry()
    registry.add(dataclasses.replace(registration, function=call))
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[JobOutcome] = loop.create_future()

    def report(job: LeasedJob, outcome: JobOutcome) -> None:
        if not ended.done():
            ended.set_result(outcome)

    runner = Runner(
        registry,
        concurrency=1,
        max_abandoned_threads=1,
        # The executor's defaults (the class attributes of its settings are the declared defaults).
        max_result_bytes=ExecutorSettings.max_result_bytes,
        backoff=BackoffPolicy(ExecutorSettings.retry_backoff_base_seconds, ExecutorSettings.retry_backoff_cap_seconds),
        report=report,
        on_slot_freed=lambda: None,
    )
    # As lease_jobs returns it (by name: the field order is the database layer's); no queue wait, no trace.
    job = LeasedJob(
        job_id=job_id, type=job_type, priority=_PRIORITY, payload=_stored(payload), attempt=attempt,
        max_attempts=max_attempts, timeout_seconds=timeout_seconds, lease_token=_LEASE_TOKEN,
        queue_wait_seconds=0.0, traceparent=None,
    )  # fmt: skip
    progress: list[tuple[int, str]] = []

    def sample_progress() -> None:
        report = contexts[0].take_progress() if contexts else None
        if report is not None:
            progress.append(report)

    cancel_at = None if cancel_after is None else loop.time() + cancel_after
    try:
        runner.start(job)
        while not ended.done():
            sample_progress()
            if cancel_at is not None and loop.time() >= cancel_at:
                runner.cancel(job_id)
                cancel_at = None
            await asyncio.wait([ended], timeout=PROGRESS_SAMPLE_SECONDS)
    finally:
        runner.shutdown_threads()
    sample_progress()
    outcome = ended.result()
    return HandlerRun(
        job_type=job_type,
        status=outcome.status,
        result=None if outcome.result is None else json.loads(outcome.result),
        error_message=outcome.error_message,
        retry_delay=outcome.retry_delay,
        progress=progress,
    )


def _blocking(function: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, R]:
    """``function`` run to completion on an event loop of its own."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return asyncio.run(function(*args, **kwargs))

    return run


run_handler = _blocking(run_handler_async)
run_handler.__name__ = run_handler.__qualname__ = "run_handler"


def _registration_of(handler: str | DeclaredJobType | Callable[..., Any], registry: HandlerRegistry) -> Registration:
    """The registration of ``handler`` in ``registry``; a function it does not know gets one of its own."""
    if isinstance(handler, str) or not callable(handler):
        job_type = handler if isinstance(handler, str) else handler.name
        found = registry.get(job_type)
        if found is None:
            raise LookupError(
                f"no handler is registered for job type {job_type!r}: import the module that registers it first"
            )
        return found
    for registration in registry:
        if registration.handler is handler:
            return registration
    return HandlerRegistry().register(UNREGISTERED_TYPE, handler)


def _stored(payload: Any) -> Any:
    """The payload as the handler would get it back from the jobs table: through JSON."""
    try:
        return json.loads(json.dumps({} if payload is None else jsonable(payload), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"payload cannot be stored as JSON: {error}") from error
