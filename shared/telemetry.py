"""Logging and tracing set-up shared by every process.

Logs: one line per event, text for people or JSON for machines. LOG_LEVEL (default INFO) and LOG_FORMAT
(text | json) choose. Extra fields given with ``logger.info("...", extra={"job_id": 1, "type": "echo"})``
appear in both formats.

Traces: OpenTelemetry, exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; OTEL_EXPORTER_OTLP_PROTOCOL picks grpc (default) or
http/protobuf, and the other standard OTEL_* variables (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER, ...) are honoured by the SDK. Without an endpoint no provider is installed and every
span is OpenTelemetry's no-op span, which costs next to nothing. A job carries the W3C ``traceparent`` of
the request that submitted it, so each attempt's span joins that trace.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.settings import ProcessSettings

__all__ = [
    "JOB_TYPE_LABEL",
    "LOG_FIELDS",
    "OTHER_LABEL_VALUE",
    "SCHEDULE_LABEL",
    "TRACEBACK_FIELD",
    "LabelCap",
    "configure_logging",
    "configure_tracing",
    "context_from_carrier",
    "current_trace_id",
    "current_traceparent",
    "shutdown_tracing",
    "trace_id_of",
]

_PROPAGATOR = TraceContextTextMapPropagator()

# Context fields a log call may pass in ``extra``; both formatters show them.
LOG_FIELDS = ("job_id", "type", "attempt", "trace_id", "worker", "count", "role", "token_fingerprint")
# An ``extra`` holding a traceback already formatted (a failed job attempt's, bounded): printed as an
# exception is, under "exception" in JSON and on the lines after the message in text.
TRACEBACK_FIELD = "traceback"

OTHER_LABEL_VALUE = "_other"


@dataclass
class LabelCap:
    """Label values that clients choose (job types, schedule names), bounded: the first ``cap`` distinct
    values a process sees are labels of their own, and every later one is counted as ``_other``, so that
    a client cannot grow the metrics without bound. Each process sets ``cap`` from
    METRICS_MAX_LABEL_VALUES at start."""

    cap: int
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:  # executors label from handler threads too
            if len(self._seen) < self.cap:
                self._seen.add(value)
                return value
        return OTHER_LABEL_VALUE


JOB_TYPE_LABEL = LabelCap(ProcessSettings.metrics_max_label_values)
SCHEDULE_LABEL = LabelCap(ProcessSettings.metrics_max_label_values)

# How long shutdown_tracing waits for buffered spans to leave; an unreachable collector must not hold
# up a process that was asked to stop (the exporter retries for up to OTEL_EXPORTER_OTLP_TIMEOUT).
SHUTDOWN_TRACING_TIMEOUT_SECONDS = 5.0


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in LOG_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif hasattr(record, TRACEBACK_FIELD):
            entry["exception"] = getattr(record, TRACEBACK_FIELD)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)-7s {service} %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{name}={getattr(record, name)}" for name in LOG_FIELDS if hasattr(record, name))
        if fields:
            line = f"{line} [{fields}]"
        if hasattr(record, TRACEBACK_FIELD) and not record.exc_info:
            line = f"{line}\n{getattr(record, TRACEBACK_FIELD).rstrip()}"
        return line


def _add_trace_id(record: logging.LogRecord) -> bool:
    """A record logged inside a span carries that span's trace id, unless the call gave one."""
    if not hasattr(record, "trace_id"):
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
    return True


def configure_logging(service: str, level: str = "INFO", log_format: str = "text") -> None:
    """Send every log record to stderr in the chosen format; replaces earlier handlers.

    Records logged while a span is current (an RPC, a job attempt) get its ``trace_id``.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if log_format == "json" else TextFormatter(service))
    handler.addFilter(_add_trace_id)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def configure_tracing(service: str) -> bool:
    """Install an SDK tracer provider exporting over OTLP if an endpoint is configured; True if so."""
    if not (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        return False
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    )
    exporter: Any
    if protocol.startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter()
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        exporter = GrpcExporter()
    # OTEL_SERVICE_NAME, when set, wins over the process's own name (Resource.create reads it).
    resource = Resource.create({SERVICE_NAME: service} if not os.environ.get("OTEL_SERVICE_NAME") else {})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def shutdown_tracing(timeout: float = SHUTDOWN_TRACING_TIMEOUT_SECONDS) -> None:
    """Flush spans still buffered; call once before the process exits. Gives up after ``timeout``
    seconds (a collector that cannot be reached), leaving the rest to the daemon thread."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is None:
        return
    thread = threading.Thread(target=shutdown, name="otel-shutdown", daemon=True)
    thread.start()
    thread.join(timeout)


def context_from_carrier(carrier: dict[str, str] | Iterable[tuple[str, str | bytes]] | None) -> otel_context.Context:
    """The trace context in W3C headers or gRPC metadata (``traceparent``/``tracestate``), if any."""
    if carrier is None:
        return otel_context.Context()
    if not isinstance(carrier, dict):
        carrier = {key: value for key, value in carrier if isinstance(value, str)}
    return _PROPAGATOR.extract(carrier)


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to store with a job; None when nothing is traced."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id (32 hex digits) in a W3C traceparent ``00-<trace id>-<span id>-<flags>``; None if absent."""
    if traceparent is None or len(traceparent) < 55 or traceparent[2] != "-":
        return None
    return traceparent[3:35]


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, for log lines; None outside a recorded span."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None
