"""A REST call and a gRPC call of the same method go through the same instrumentation: the same metrics
labels move, the same server span is exported with the same attributes, and the same deadline applies.

The api runs with tokens and exports spans to a local OTLP receiver; each call carries a traceparent of
its own, so that its server span can be found by trace id.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg2
import pytest

from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer, running_api
from tests.support.processes import wait_until
from tests.support.telemetry import OtlpReceiver, ReceivedSpan, Samples, scrape

TOKEN = "parity-token-0123456789abcdef"
AUTH = f"Bearer {TOKEN}"


@dataclass
class Traced:
    api: ApiServer
    stub: JobServiceStub
    receiver: OtlpReceiver


@pytest.fixture(scope="module")
def traced(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    with OtlpReceiver() as receiver:
        env = {
            "API_TOKENS": TOKEN,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        with (
            running_api(database_url, tmp_path_factory.mktemp("parity"), env) as api,
            grpc.insecure_channel(f"127.0.0.1:{api.grpc_port}") as channel,
        ):
            yield Traced(api, JobServiceStub(channel), receiver)


def rpc_samples(traced: Traced) -> Samples:
    """The api's per-method samples (requests by code, and the duration histogram's count)."""
    samples = scrape(traced.api.http_port)
    names = {"rpc_requests_total", "rpc_duration_seconds_count"}
    return {key: number for key, number in samples.items() if key[0] in names}


def moved(before: Samples, after: Samples) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {key: number - before.get(key, 0.0) for key, number in after.items() if number != before.get(key, 0.0)}


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-01", trace_id


def server_span(traced: Traced, trace_id: str) -> ReceivedSpan:
    def exported() -> list[ReceivedSpan]:
        return [s for s in traced.receiver.in_trace(trace_id) if s.span.name.startswith("jobs.v1.JobService/")]

    wait_until(lambda: bool(exported()), 15, 0.05, f"the server span of trace {trace_id}")
    (span,) = exported()
    return span


def span_facts(span: ReceivedSpan) -> dict[str, Any]:
    return {
        "service": span.service,
        "name": span.span.name,
        "kind": span.span.kind,
        "status": span.span.status.code,
        "attributes": span.attributes,
    }


Call = Callable[[Traced, str], object]


def rest(method: str, path: str, body: Any = None, token: bool = True) -> Call:
    def call(traced: Traced, header: str) -> object:
        headers = {"traceparent": header, **({"Authorization": AUTH} if token else {})}
        return traced.api.request(method, path, body, headers=headers).status

    return call


def grpc_call(name: str, request: Any, token: bool = True) -> Call:
    def call(traced: Traced, header: str) -> object:
        metadata = (("traceparent", header), *((("authorization", AUTH),) if token else ()))
        method = getattr(traced.stub, name)
        try:
            reply = method(request, metadata=metadata)
            if name == "WatchJob":
                list(reply)
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    return call


def counted_call(traced: Traced, call: Call, header: str) -> tuple[object, dict[Any, float]]:
    """The call's status, and the metrics it moved."""
    before = rpc_samples(traced)
    status = call(traced, header)
    # A gRPC client may see an error before the server's wrapper has counted it.
    wait_until(lambda: bool(moved(before, rpc_samples(traced))), 10, 0.05, "the call to be counted")
    return status, moved(before, rpc_samples(traced))


def check_parity(traced: Traced, over_rest: Call, over_grpc: Call, spans: bool = True) -> None:
    results = {}
    for protocol, call in (("rest", over_rest), ("grpc", over_grpc)):
        header, trace_id = traceparent()
        results[protocol] = (
            *counted_call(traced, call, header),
            span_facts(server_span(traced, trace_id)) if spans else None,
        )
    (rest_status, rest_moved, rest_span), (grpc_status, grpc_moved, grpc_span) = results["rest"], results["grpc"]
    assert rest_moved, f"the REST call ({rest_status}) moved no metric"
    assert rest_moved == grpc_moved, f"REST {rest_status} vs gRPC {grpc_status}"
    assert rest_span == grpc_span


def job_id(traced: Traced) -> int:
    reply = traced.api.post("/jobs", {"type": "parity"}, headers={"Authorization": AUTH})
    assert reply.status == 200, reply.body
    return int(reply.body["job_id"])


def test_a_found_job(traced: Traced) -> None:
    found = job_id(traced)
    check_parity(traced, rest("GET", f"/jobs/{found}"), grpc_call("GetJob", pb.GetJobRequest(job_id=found)))


def test_a_missing_job(traced: Traced) -> None:
    check_parity(traced, rest("GET", "/jobs/987654321"), grpc_call("GetJob", pb.GetJobRequest(job_id=987654321)))


def test_a_submit_with_a_bad_field(traced: Traced) -> None:
    check_parity(
        traced,
        rest("POST", "/jobs", {"type": "parity", "priority": 99}),
        grpc_call("SubmitJob", pb.SubmitJobRequest(type="parity", priority=99)),
    )


def test_a_submit(traced: Traced) -> None:
    check_parity(
        traced,
        rest("POST", "/jobs", {"type": "parity"}),
        grpc_call("SubmitJob", pb.SubmitJobRequest(type="parity")),
    )


def test_a_watch_stream(traced: Traced) -> None:
    watched = job_id(traced)
    traced.api.post(f"/jobs/{watched}:cancel", headers={"Authorization": AUTH})
    check_parity(
        traced, rest("GET", f"/jobs/{watched}:watch"), grpc_call("WatchJob", pb.WatchJobRequest(job_id=watched))
    )


def test_a_call_without_a_token(traced: Traced) -> None:
    """Refused before any span starts: only the count by code moves, alike for both."""
    check_parity(
        traced,
        rest("GET", "/admin/stats", token=False),
        grpc_call("GetStats", pb.GetStatsRequest(), token=False),
        spans=False,
    )


def test_a_grpc_timeout_header_bounds_a_rest_call(traced: Traced, db: str) -> None:
    """``grpc-timeout`` is the REST call's deadline, as it is a gRPC call's: DEADLINE_EXCEEDED (504)."""
    blocker = psycopg2.connect(db)
    try:
        with blocker.cursor() as cur:
            # An uncommitted insert of the same key makes the api's insert wait inside the database.
            cur.execute(
                "INSERT INTO jobs (type, status, timeout_seconds, idempotency_key) VALUES ('slow', 'READY', 30, 'held')"
            )
        body = {"jobs": [{"type": "slow", "idempotency_key": "held"}]}
        before = rpc_samples(traced)
        reply = traced.api.post("/jobs:batch", body, headers={"Authorization": AUTH, "grpc-timeout": "300m"})
        assert reply.status == 504, reply.body
        assert reply.body["status"] == "DEADLINE_EXCEEDED"
        labels = frozenset({"method": "SubmitJobs", "code": "DEADLINE_EXCEEDED"}.items())
        assert moved(before, rpc_samples(traced))[("rpc_requests_total", labels)] == 1
    finally:
        blocker.rollback()
        blocker.close()
