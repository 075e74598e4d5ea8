"""The executor's telemetry beyond metrics: the fields of its job log lines, and its spans, one per job
attempt and one per lease_jobs / complete_jobs statement that moved jobs.

An attempt's span (``job <type>``, kind CONSUMER) is a child of the W3C traceparent stored with the job,
that of the RPC that submitted it, so one trace shows the submit and every attempt, retries included. It
links to the lease_jobs span of the batch that leased it. The statements' spans are roots of their own
(one per batch, never per job): a batch serves jobs of many traces.

Only built when ``configure_tracing`` installed an exporting provider: without one the Runner, Leaser and
Completer get ``None`` and do no span work at all, not even OpenTelemetry's no-op calls.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
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

from shared.database.queue import JobOutcome, LeasedJob
from shared.jobs import JobStatus
from shared.telemetry import context_from_carrier, trace_id_of

__all__ = ["OUTCOME_NAMES", "ExecutorTracing", "job_log_fields", "parent_context"]

# job.outcome of an attempt, by the status its outcome writes. "timed_out", "lost" (another party took
# the lease over) and "interrupted" (handed back at shutdown) are decided by the runner.
OUTCOME_NAMES = {
    JobStatus.COMPLETED: "completed",
    JobStatus.PENDING: "retry",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}

_DATABASE_ATTRIBUTES = {"db.system": "postgresql"}


class ExecutorTracing:
    """Starts and ends the executor's spans."""

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self._tracer = tracer or trace.get_tracer("services.executor")
        # The lease_jobs span of the batch being started: each attempt of that batch links to it.
        self._lease_link: Sequence[Link] = ()

    def start_attempt(self, job: LeasedJob) -> Span:
        """A span for this attempt, in the submitting request's trace when the job carries one.

        Attributes are few on purpose: the SDK's cost per span grows with them, and an executor may
        run thousands of attempts a second.
        """
        return self._tracer.start_span(
            f"job {job.type}",
            context=parent_context(job.traceparent),
            kind=SpanKind.CONSUMER,
            links=self._lease_link,
            attributes={
                "job.id": job.job_id,
                "job.type": job.type,
                "job.attempt": job.attempt,
                "job.max_attempts": job.max_attempts,
            },
        )

    @staticmethod
    def end_attempt(span: Span, outcome: JobOutcome | None, how: str | None = None) -> None:
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
                span.add_event("exception", {"exception.message": outcome.error_message})
                span.set_status(Status(StatusCode.ERROR, outcome.error_message))
        span.end()

    def record_lease(self, started_ns: int, requested: int, leased: int, error: BaseException | None = None) -> None:
        """A span for a lease_jobs statement that leased jobs or failed; an empty poll leaves no trace.

        Recorded after the fact (the span starts at ``started_ns``) because only the answer tells
        whether the statement is worth a span.
        """
        if leased == 0 and error is None:
            self._lease_link = ()
            return
        span = self._statement_span("lease_jobs", started_ns, {"jobs.requested": requested, "jobs.leased": leased})
        _end(span, error)
        self._lease_link = (Link(span.get_span_context()),) if error is None else ()

    def record_complete(
        self, started_ns: int, outcomes: int, written: int | None, error: BaseException | None = None
    ) -> SpanContext:
        """A span for one complete_jobs statement: ``outcomes`` sent, ``written`` still held (the rest stale)."""
        attributes = {"jobs.outcomes": outcomes}
        if written is not None:
            attributes["jobs.written"] = written
            attributes["jobs.stale"] = outcomes - written
        span = self._statement_span("complete_jobs", started_ns, attributes)
        _end(span, error)
        return span.get_span_context()

    def _statement_span(self, operation: str, started_ns: int, attributes: dict[str, int]) -> Span:
        return self._tracer.start_span(
            operation,
            context=Context(),
            kind=SpanKind.CLIENT,
            start_time=started_ns,
            attributes={**_DATABASE_ATTRIBUTES, "db.operation.name": operation, **attributes},
        )


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


def _end(span: Span, error: BaseException | None) -> None:
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end(time.time_ns())


def job_log_fields(job: LeasedJob) -> dict[str, Any]:
    """The ``extra`` of a job's log lines (shared/telemetry.py LOG_FIELDS); never its payload."""
    fields: dict[str, Any] = {"job_id": job.job_id, "type": job.type, "attempt": job.attempt}
    trace_id = trace_id_of(job.traceparent)
    if trace_id is not None:
        fields["trace_id"] = trace_id
    return fields
