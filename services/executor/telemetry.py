"""The executor's telemetry beyond metrics: the fields of its job log lines, and its spans, one per job
attempt.

An attempt's span (``job <type>``, kind CONSUMER) is a child of the W3C traceparent stored with the job,
that of the RPC that submitted it, so one trace shows the submit and every attempt, retries included. It
links to the span of the lease_jobs statement that leased it, which the database gateway left (one per
batch, a root of its own: a batch serves jobs of many traces; see shared/database/gateway.py).

``ExecutorTracing`` is used when ``configure_tracing`` installed an exporting provider; otherwise the
Runner gets ``NoTracing``, whose methods do no span work at all, not even OpenTelemetry's no-op calls.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN,
    INVALID_SPAN_CONTEXT,
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from shared.database import JobOutcome, LeasedJob, last_statement_span
from shared.jobs import JobStatus
from shared.telemetry import context_from_carrier, trace_id_of

__all__ = ["OUTCOME_NAMES", "ExecutorTracing", "NoTracing", "job_log_fields", "parent_context"]

T = TypeVar("T")

# job.outcome of an attempt, by the status its outcome writes. "timed_out", "lost" (another party took
# the lease over) and "interrupted" (handed back at shutdown) are decided by the runner.
OUTCOME_NAMES = {
    JobStatus.COMPLETED: "completed",
    JobStatus.PENDING: "retry",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


class ExecutorTracing:
    """Starts and ends the spans of attempts, and runs each handler inside its attempt's span."""

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self._tracer = tracer or trace.get_tracer("services.executor")

    def start_attempt(self, job: LeasedJob) -> Span:
        """A span for this attempt, in the submitting request's trace when the job carries one, linked
        to the lease statement (the last statement of the lease loop, which starts the attempts).

        Attributes are few on purpose: the SDK's cost per span grows with them, and an executor may
        run thousands of attempts a second.
        """
        lease = last_statement_span()
        return self._tracer.start_span(
            f"job {job.type}",
            context=parent_context(job.traceparent),
            kind=SpanKind.CONSUMER,
            links=(Link(lease),) if lease is not None else (),
            attributes={
                "job.id": job.job_id,
                "job.type": job.type,
                "job.attempt": job.attempt,
                "job.max_attempts": job.max_attempts,
            },
        )

    def end_attempt(self, span: Span, outcome: JobOutcome | None, how: str | None = None) -> None:
        """Record how the attempt ended (``how`` overrides the name the outcome's status gives) and end it.

        ``job.status`` (the status written) is added where job.outcome does not tell it: a timeout
        retries or fails the job.
        """
        name = how or (OUTCOME_NAMES.get(outcome.status, outcome.status.value) if outcome is not None else "lost")
        span.set_attribute("job.outcome", name)
        if outcome is not None:
            if how is not None:
                span.set_attribute("job.status", outcome.status.value)
            if outcome.retry_delay is not None:
                span.set_attribute("job.retry_delay_seconds", outcome.retry_delay)
            if outcome.error_message is not None and outcome.status is not JobStatus.CANCELLED:
                # An exception event as OpenTelemetry's semantic conventions name its attributes.
                event: dict[str, str] = {"exception.message": outcome.error_message}
                if outcome.error_type is not None:
                    event["exception.type"] = outcome.error_type
                if outcome.traceback is not None:
                    event["exception.stacktrace"] = outcome.traceback
                span.add_event("exception", event)
                span.set_status(Status(StatusCode.ERROR, outcome.error_message))
        span.end()

    def run_in(self, span: Span, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` with ``span`` current: a task or thread it starts inherits the context, so
        the handler's logs and spans join the attempt's."""
        with trace.use_span(span, end_on_exit=False):
            return function(*args)

    def in_thread(self, function: Callable[..., T]) -> Callable[..., T]:
        """``function``, to run in another thread within the current context (the attempt's span)."""
        return functools.partial(contextvars.copy_context().run, function)


class NoTracing(ExecutorTracing):
    """No spans: every method does the least it can (the executor when no exporter is configured)."""

    def __init__(self) -> None:
        pass

    def start_attempt(self, job: LeasedJob) -> Span:
        return INVALID_SPAN

    def end_attempt(self, span: Span, outcome: JobOutcome | None, how: str | None = None) -> None:
        pass

    def run_in(self, span: Span, function: Callable[..., T], *args: Any) -> T:
        return function(*args)

    def in_thread(self, function: Callable[..., T]) -> Callable[..., T]:
        return function


def parent_context(traceparent: str | None) -> Context:
    """The context of a stored W3C traceparent, for a child span; an empty context when there is none.

    Parsed by hand: the api stored it in canonical form, and this is several times cheaper than the
    propagator, per job. Anything unexpected goes through the propagator, which ignores what is invalid.
    """
    if not traceparent:
        return Context()
    if len(traceparent) == 55 and traceparent.startswith("00-"):
        try:
            span_context = SpanContext(
                trace_id=int(traceparent[3:35], 16),
                span_id=int(traceparent[36:52], 16),
                is_remote=True,
                trace_flags=TraceFlags(int(traceparent[53:55], 16)),
            )
        except ValueError:
            span_context = INVALID_SPAN_CONTEXT
        if span_context.is_valid:
            return trace.set_span_in_context(NonRecordingSpan(span_context), Context())
    return context_from_carrier({"traceparent": traceparent})


def job_log_fields(job: LeasedJob) -> dict[str, Any]:
    """The ``extra`` of a job's log lines (shared/telemetry.py LOG_FIELDS); never its payload."""
    fields: dict[str, Any] = {"job_id": job.job_id, "type": job.type, "attempt": job.attempt}
    trace_id = trace_id_of(job.traceparent)
    if trace_id is not None:
        fields["trace_id"] = trace_id
    return fields
