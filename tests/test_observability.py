"""Traces, metrics and logs of the three real processes, as an operator's collector and Prometheus see them.

One small workload runs once for the module, against a database of its own: an ``echo`` job and a ``fail``
job that fails once and then succeeds, each submitted over REST with a W3C ``traceparent`` header, and one
job scheduled an hour ahead. The processes export spans over OTLP/HTTP to a receiver this test runs on a
local port (decoding the protobuf ExportTraceServiceRequest), write JSON logs, and are scraped once the
work is done. Each test then checks one part of what was recorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import secrets
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from opentelemetry import trace
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sqlalchemy import Engine

from services.executor.errors import PermanentError
from services.executor.outcomes import BackoffPolicy
from services.executor.registry import HandlerRegistry
from services.executor.runner import Runner
from services.executor.telemetry import ExecutorTracing, job_log_fields, parent_context
from shared.database import Database, JobOutcome, LeasedJob
from shared.jobs import NewJob
from shared.telemetry import configure_logging, configure_tracing, context_from_carrier, trace_id_of
from tests.support.api import ApiServer
from tests.support.database import fresh_database, server_url
from tests.support.gateway import gateway
from tests.support.processes import ServiceProcess, free_port, wait_until
from tests.support.telemetry import OtlpReceiver, ReceivedSpan, Samples, scrape, value

pytestmark = pytest.mark.slow

T = TypeVar("T")

# Values that must never reach a log line: they are only in the jobs' payloads.
SECRET = f"payload-secret-{secrets.token_hex(6)}"
FAIL_MESSAGE = "planned failure of the first attempt"


@dataclass
class Traced:
    """What the workload left behind."""

    trace_id: str  # of the echo job's submit
    parent_id: str  # the client's span id in that traceparent
    retried_trace_id: str  # of the fail job's submit
    retried_parent_id: str
    echo_job: int
    retried_job: int
    receiver: OtlpReceiver
    metrics: dict[str, Samples] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)


def _traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent_id}-01", trace_id, parent_id


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    log_dir = tmp_path_factory.mktemp("observability")
    with fresh_database(server_url(), "observability") as database_url, OtlpReceiver() as receiver:
        ports = {name: free_port() for name in ("grpc", "http", "scheduler", "executor")}
        common = {
            "DATABASE_URL": database_url,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "RETRY_BACKOFF_BASE_SECONDS": "0.1",
            "RETRY_BACKOFF_CAP_SECONDS": "0.2",
            "EXECUTOR_POLL_INTERVAL_SECONDS": "0.2",
            "SCHEDULER_MAX_IDLE_SECONDS": "0.2",
            "SCHEDULER_COMPACT_INTERVAL_SECONDS": "0.2",
        }
        processes = {
            "api": ServiceProcess(
                "services.api",
                {**common, "GRPC_PORT": str(ports["grpc"]), "HTTP_PORT": str(ports["http"])},
                log_dir=log_dir,
            ),
            "scheduler": ServiceProcess(
                "services.scheduler", {**common, "METRICS_PORT": str(ports["scheduler"])}, log_dir=log_dir
            ),
            "executor": ServiceProcess(
                "services.executor", {**common, "METRICS_PORT": str(ports["executor"])}, log_dir=log_dir
            ),
        }
        try:
            for process in processes.values():
                process.start()
            processes["api"].wait_for_port(ports["http"])
            processes["scheduler"].wait_for_port(ports["scheduler"])
            processes["executor"].wait_for_port(ports["executor"])
            api = ApiServer(processes["api"], ports["grpc"], ports["http"])
            yield _run_workload(api, receiver, ports, processes)
        finally:
            for process in processes.values():
                process.stop()


def _run_workload(
    api: ApiServer, receiver: OtlpReceiver, ports: dict[str, int], processes: dict[str, ServiceProcess]
) -> Traced:
    header, trace_id, parent_id = _traceparent()
    echo = api.request(
        "POST", "/jobs", {"type": "echo", "payload": {"secret": SECRET}}, headers={"traceparent": header}
    )
    assert echo.status == 200, echo.body
    retried_header, retried_trace_id, retried_parent_id = _traceparent()
    retried = api.request(
        "POST",
        "/jobs",
        {"type": "fail", "max_attempts": 3, "payload": {"times": 1, "message": FAIL_MESSAGE, "secret": SECRET}},
        headers={"traceparent": retried_header},
    )
    assert retried.status == 200, retried.body
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    scheduled = api.request("POST", "/jobs", {"type": "echo", "payload": {}, "scheduled_at": later})
    assert scheduled.status == 200 and scheduled.body["status"] == "PENDING", scheduled.body
    result = Traced(
        trace_id, parent_id, retried_trace_id, retried_parent_id, echo.body["job_id"], retried.body["job_id"], receiver
    )

    def finished(job_id: int) -> bool:
        return api.request("GET", f"/jobs/{job_id}").body["status"] == "COMPLETED"

    wait_until(lambda: finished(result.echo_job) and finished(result.retried_job), 20, 0.05, "both jobs to complete")

    def attempt_spans_exported() -> bool:
        return len([s for s in receiver.named("job fail") if s.trace_id == retried_trace_id]) == 2 and any(
            s.trace_id == trace_id for s in receiver.named("job echo")
        )

    wait_until(attempt_spans_exported, 10, 0.05, "the attempts' spans at the receiver")

    # The scheduler's queue-depth gauges follow the job_counts aggregate a compaction pass after the work.
    def counted() -> bool:
        return value(scrape(ports["scheduler"]), "jobs_by_status", status="COMPLETED") == 2

    wait_until(counted, 10, 0.1, "the scheduler to count both completed jobs")

    # The api reads job_counts again once its counts are 5 s old, when a scrape finds them so.
    def api_counted() -> bool:
        samples = scrape(ports["http"])
        return value(samples, "jobs_pending_count") == 1 and value(samples, "jobs_processing_count") == 0

    wait_until(api_counted, 15, 0.2, "the api's queue-depth gauges to follow")
    for name in ("api", "scheduler", "executor"):
        result.metrics[name] = scrape(ports["http" if name == "api" else name])
    # Statement spans are exported a batch later than the attempts at most.
    wait_until(
        lambda: bool(receiver.named("promote_due_jobs") and receiver.named("complete_jobs")), 5, 0.05, "statement spans"
    )
    for name, process in processes.items():
        assert process.stop() == 0, process.output()[-3000:]
        result.logs[name] = process.output()
    return result


# --- traces ---------------------------------------------------------------------------------------------


def _server_span(spans: list[ReceivedSpan]) -> ReceivedSpan:
    (server,) = [s for s in spans if s.span.name == "jobs.v1.JobService/SubmitJob"]
    return server


def test_one_trace_holds_the_submit_and_both_attempts_of_a_retried_job(traced: Traced) -> None:
    spans = traced.receiver.in_trace(traced.retried_trace_id)
    server = _server_span(spans)
    assert server.service == "jobs-api"
    assert server.span.kind == Span.SPAN_KIND_SERVER
    # The REST call's traceparent reached the gRPC server span through the shim.
    assert server.parent_span_id == traced.retried_parent_id

    attempts = sorted((s for s in spans if s.span.name == "job fail"), key=lambda s: s.attributes["job.attempt"])
    assert [s.attributes["job.attempt"] for s in attempts] == [1, 2]
    for attempt in attempts:
        assert attempt.service == "jobs-executor"
        assert attempt.span.kind == Span.SPAN_KIND_CONSUMER
        assert attempt.parent_span_id == server.span_id, "each attempt is a child of the submitting RPC's span"
        assert attempt.attributes["job.id"] == traced.retried_job
        assert attempt.attributes["job.type"] == "fail"
        assert attempt.attributes["job.max_attempts"] == 3
    first, second = attempts
    assert first.attributes["job.outcome"] == "retry"
    assert 0 < first.attributes["job.retry_delay_seconds"] <= 0.2
    assert first.span.status.code == Status.STATUS_CODE_ERROR
    assert FAIL_MESSAGE in first.span.status.message
    ((event, recorded),) = first.events
    assert event == "exception"
    # As OpenTelemetry's semantic conventions name them: the failure's class and its traceback.
    assert recorded["exception.type"] == "services.executor.handlers.basic.DeliberateFailure"
    assert ", in fail\n" in recorded["exception.stacktrace"]
    assert recorded["exception.stacktrace"].rstrip().endswith(f"DeliberateFailure: {FAIL_MESSAGE}")
    assert second.attributes["job.outcome"] == "completed"
    assert second.span.status.code != Status.STATUS_CODE_ERROR
    assert second.span.start_time_unix_nano > first.span.end_time_unix_nano
    # Each attempt links to the lease_jobs statement that leased it.
    lease_ids = {s.span.span_id for s in traced.receiver.named("lease_jobs")}
    assert all(link.span_id in lease_ids for attempt in attempts for link in attempt.span.links)
    assert all(len(attempt.span.links) == 1 for attempt in attempts)


def test_the_submit_trace_of_a_job_that_ran_once(traced: Traced) -> None:
    spans = traced.receiver.in_trace(traced.trace_id)
    server = _server_span(spans)
    assert server.parent_span_id == traced.parent_id
    (attempt,) = [s for s in spans if s.span.name == "job echo"]
    assert attempt.parent_span_id == server.span_id
    assert attempt.attributes["job.outcome"] == "completed"
    assert attempt.attributes["job.attempt"] == 1
    assert attempt.attributes["job.id"] == traced.echo_job
    # The api's database call is a client span under the RPC's.
    database = [s for s in spans if s.service == "jobs-api" and s.span.kind == Span.SPAN_KIND_CLIENT]
    assert database and all(s.parent_span_id == server.span_id for s in database)
    assert {s.service for s in spans} == {"jobs-api", "jobs-executor"}


def test_hot_statements_have_spans_of_their_own_in_each_process(traced: Traced) -> None:
    receiver = traced.receiver
    leases = receiver.named("lease_jobs")
    assert leases and all(s.service == "jobs-executor" and s.attributes["db.rows_affected"] >= 1 for s in leases)
    assert sum(s.attributes["db.rows_affected"] for s in leases) == 3  # echo, fail, fail again
    completes = receiver.named("complete_jobs")
    assert sum(s.attributes["db.rows_affected"] for s in completes) == 3
    assert all(s.span.kind == Span.SPAN_KIND_CLIENT and s.parent_span_id == "" for s in leases + completes)
    (promote,) = receiver.named("promote_due_jobs")  # the retry, due after its backoff
    assert promote.service == "jobs-scheduler"
    assert promote.attributes["db.rows_affected"] == 1
    services = {s.service for s in receiver.spans}
    assert services == {"jobs-api", "jobs-executor", "jobs-scheduler"}


# --- metrics --------------------------------------------------------------------------------------------


def test_each_process_counts_the_workload_by_value(traced: Traced) -> None:
    api, executor, scheduler = (traced.metrics[name] for name in ("api", "executor", "scheduler"))

    assert value(api, "jobs_created_total", job_type="echo") == 2
    assert value(api, "jobs_created_total", job_type="fail") == 1
    assert value(api, "rpc_requests_total", method="SubmitJob", code="OK") == 3
    assert value(api, "rpc_duration_seconds_count", method="SubmitJob") == 3
    assert (value(api, "rpc_requests_total", method="GetJob", code="OK") or 0) >= 2
    assert value(api, "jobs_pending_count") == 1  # the seed served the queue depth on the api
    assert value(api, "jobs_ready_count") == 0

    assert value(executor, "worker_up") == 1
    assert value(executor, "jobs_completed_total", job_type="echo") == 1
    assert value(executor, "jobs_completed_total", job_type="fail") == 1
    assert value(executor, "jobs_retried_total", job_type="fail") == 1
    assert (value(executor, "jobs_failed_total", job_type="fail") or 0) == 0
    assert value(executor, "leases_taken_total") == 3
    assert value(executor, "stale_outcomes_total") == 0
    assert value(executor, "job_duration_seconds_count", job_type="echo") == 1
    assert value(executor, "job_duration_seconds_count", job_type="fail") == 2
    assert value(executor, "job_duration_seconds_bucket", job_type="fail", le="+Inf") == 2
    assert value(executor, "job_queue_wait_seconds_count", job_type="fail") == 2
    assert value(executor, "job_queue_wait_seconds_bucket", job_type="echo", le="+Inf") == 1
    # The retry waited out its backoff in PENDING; its queue wait counts from run_at, so stays small.
    assert (value(executor, "job_queue_wait_seconds_sum", job_type="fail") or 0) < 5

    assert value(scheduler, "scheduler_is_leader") == 1
    assert value(scheduler, "jobs_promoted_total") == 1
    assert value(scheduler, "jobs_pending_count") == 1  # the job scheduled an hour ahead
    assert value(scheduler, "jobs_ready_count") == 0
    assert value(scheduler, "jobs_processing_count") == 0
    assert value(scheduler, "jobs_by_status", status="COMPLETED") == 2


# --- logs -----------------------------------------------------------------------------------------------


def _lines(log: str) -> list[dict[str, Any]]:
    entries = []
    for line in log.splitlines():
        if line.strip():
            entry = json.loads(line)  # every line: JSON, or this fails naming it
            assert isinstance(entry, dict), line
            entries.append(entry)
    return entries


def test_json_logs_carry_the_job_and_its_trace_and_no_payload(traced: Traced) -> None:
    for name, log in traced.logs.items():
        entries = _lines(log)
        assert entries, f"{name} logged nothing"
        assert {entry["service"] for entry in entries} == {name}
        assert SECRET not in log, f"a payload value reached the {name} log"
    job_events = [entry for entry in _lines(traced.logs["executor"]) if "job_id" in entry]
    (failure,) = [entry for entry in job_events if entry["job_id"] == traced.retried_job]
    assert failure["level"] == "WARNING"
    assert (failure["type"], failure["attempt"], failure["trace_id"]) == ("fail", 1, traced.retried_trace_id)
    # The failed attempt's traceback, where JSON logs put an exception, starting at the handler.
    assert failure["exception"].startswith("Traceback (most recent call last):")
    assert ", in fail\n" in failure["exception"] and "runner.py" not in failure["exception"]
    assert failure["exception"].rstrip().endswith(f"DeliberateFailure: {FAIL_MESSAGE}")
    for entry in job_events:
        assert {"job_id", "type", "attempt", "trace_id"} <= set(entry), entry


# --- the executor's spans, in process -------------------------------------------------------------------


@dataclass
class RunnerUnderTest:
    runner: Runner
    tracing: ExecutorTracing
    provider: TracerProvider
    exporter: InMemorySpanExporter
    reported: list[tuple[LeasedJob, JobOutcome]]


def _runner(handlers: dict[str, Callable[..., Any]], inline: bool = False) -> RunnerUnderTest:
    registry = HandlerRegistry()
    for job_type, function in handlers.items():
        registry.register(job_type, function, inline=inline)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reported: list[tuple[LeasedJob, JobOutcome]] = []
    tracing = ExecutorTracing(provider.get_tracer("test"))
    runner = Runner(
        registry,
        concurrency=4,
        max_abandoned_threads=4,
        max_result_bytes=1 << 20,
        backoff=BackoffPolicy(0.5, 1.0),
        report=lambda job, outcome: reported.append((job, outcome)),
        on_slot_freed=lambda: None,
        tracing=tracing,
    )
    return RunnerUnderTest(runner, tracing, provider, exporter, reported)


def _run_on_a_fresh_loop(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run in a thread of its own: a test before this one may leave a loop running in this thread
    (playwright's sync API does)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, scenario()).result(timeout=60)


def _leased(
    job_type: str, job_id: int = 7, attempt: int = 1, timeout: int = 30, traceparent: str | None = None
) -> LeasedJob:
    return LeasedJob(
        job_id=job_id,
        type=job_type,
        priority=5,
        payload={},
        attempt=attempt,
        max_attempts=3,
        timeout_seconds=timeout,
        lease_token=f"token-{job_id}",
        queue_wait_seconds=0.0,
        traceparent=traceparent,
    )


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_attempt_spans_name_every_ending() -> None:
    header, trace_id, parent_id = _traceparent()
    seen_in_handler: list[str] = []

    async def slow(payload: dict[str, Any], ctx: Any) -> None:
        seen_in_handler.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))
        await asyncio.sleep(30)

    def quick(payload: dict[str, Any], ctx: Any) -> dict[str, str]:
        seen_in_handler.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))
        return {"ok": "yes"}

    async def scenario() -> RunnerUnderTest:
        under_test = _runner({"slow": slow, "quick": quick})
        runner = under_test.runner
        runner.start(_leased("quick", traceparent=header))  # a thread: the context goes with it
        runner.start(_leased("slow", job_id=8, timeout=1, traceparent=header))  # times out after 1 s
        runner.start(_leased("slow", job_id=9, attempt=3))
        runner.start(_leased("slow", job_id=10))
        runner.start(_leased("slow", job_id=11))
        await asyncio.sleep(0.1)
        runner.cancel(9)
        runner.lose(10)
        await asyncio.sleep(1.2)  # job 8 times out after 1 s
        runner.interrupt_all()  # job 11
        await runner.wait_idle()
        runner.shutdown_threads()
        return under_test

    under_test = _run_on_a_fresh_loop(scenario)
    spans = {_attributes(span)["job.id"]: span for span in under_test.exporter.get_finished_spans()}
    assert {job_id: _attributes(span)["job.outcome"] for job_id, span in spans.items()} == {
        7: "completed",
        8: "timed_out",
        9: "cancelled",
        10: "lost",
        11: "interrupted",
    }
    assert _attributes(spans[8])["job.status"] == "PENDING"  # a timeout with attempts left retries
    assert spans[8].status.status_code is StatusCode.ERROR
    assert spans[9].status.status_code is not StatusCode.ERROR
    for job_id in (7, 8):
        parent = spans[job_id].parent
        assert parent is not None and format(parent.span_id, "016x") == parent_id
        assert format(spans[job_id].context.trace_id, "032x") == trace_id
    assert spans[9].parent is None  # no stored traceparent: a trace of its own
    assert seen_in_handler[:2] == [trace_id, trace_id], "handlers run inside their attempt's span"
    assert {outcome.status.value for _, outcome in under_test.reported} == {"COMPLETED", "PENDING", "CANCELLED"}


def test_inline_failures_record_the_error_and_the_lease_link(engine: Engine) -> None:
    def broken(payload: dict[str, Any], ctx: Any) -> None:
        raise PermanentError("no such account")

    gateway(engine).submit_jobs([NewJob("broken", {}, timeout_seconds=30).validate(1 << 20)])

    async def scenario() -> RunnerUnderTest:
        under_test = _runner({"broken": broken}, inline=True)
        db = Database("", "tests", pool_size=1, engine=engine, tracer=under_test.provider.get_tracer("db"))
        try:
            (job,) = await db.lease_jobs("tests", ["broken"], 4, 30)
            under_test.runner.start(job)
            assert await db.lease_jobs("tests", ["broken"], 4, 30) == []  # an empty poll: no span
        finally:
            db.close()
        return under_test

    under_test = _run_on_a_fresh_loop(scenario)
    lease, attempt = under_test.exporter.get_finished_spans()
    assert lease.name == "lease_jobs" and _attributes(lease)["db.rows_affected"] == 1
    assert attempt.name == "job broken"
    assert _attributes(attempt)["job.outcome"] == "failed"
    assert attempt.status.status_code is StatusCode.ERROR
    assert "no such account" in (attempt.status.description or "")
    assert [link.context.span_id for link in attempt.links] == [lease.context.span_id]


def test_stored_traceparents_parse_like_the_propagator() -> None:
    header, trace_id, _ = _traceparent()
    for candidate in (header, header[:-2] + "00", "00-" + "0" * 32 + header[35:], header[:-1] + "x", "junk", None):
        mine = trace.get_current_span(parent_context(candidate)).get_span_context()
        theirs = trace.get_current_span(context_from_carrier({"traceparent": candidate} if candidate else None))
        assert mine == theirs.get_span_context(), candidate
    assert trace_id_of(header) == trace_id and trace_id_of(None) is None and trace_id_of("junk") is None
    assert job_log_fields(_leased("echo", traceparent=header)) == {
        "job_id": 7,
        "type": "echo",
        "attempt": 1,
        "trace_id": trace_id,
    }
    assert "trace_id" not in job_log_fields(_leased("echo"))


def test_log_lines_inside_a_span_carry_its_trace_id(capsys: pytest.CaptureFixture[str]) -> None:
    provider = TracerProvider()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("test", "INFO", "json")
    logger = logging.getLogger("tests.observability")
    try:
        with provider.get_tracer("test").start_as_current_span("work") as span:
            logger.info("inside")
            logger.info("explicit", extra={"trace_id": "given"})
        logger.info("outside")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line.get("trace_id") for line in lines] == [
        format(span.get_span_context().trace_id, "032x"),
        "given",
        None,
    ]


def test_without_an_endpoint_no_provider_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert configure_tracing("jobs-test") is False
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert configure_tracing("jobs-test") is False
