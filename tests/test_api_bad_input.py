"""Property-based: no input crashes the api; bad input gets a 4xx naming the problem and stores nothing."""

from __future__ import annotations

import json
from typing import Any

import grpc
import psycopg2
import pytest
from google.protobuf import json_format, struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer

FIELDS = ["type", "payload", "idempotency_key", "priority", "scheduled_at", "max_attempts", "timeout_seconds"]
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)

odd_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "'; DROP TABLE jobs; --",
            "$(rm -rf /)",
            "\x00",
            "\ud800",
            "Ω≈ç√∫",
            "\U0001d54f" * 50,  # a character outside the Basic Multilingual Plane
            "../../etc/passwd",
            "%s%s%n",
            "1e309",
            "a" * 300,
        ]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    odd_text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(odd_text, children, max_size=4)),
    max_leaves=20,
)
bodies = st.dictionaries(st.one_of(st.sampled_from(FIELDS), odd_text), json_values, max_size=8)


def count_jobs(db: str) -> int:
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs")
        (count,) = cur.fetchone() or (0,)
        return int(count)


def assert_refused_cleanly(reply_status: int, body: Any) -> None:
    assert 400 <= reply_status < 500, (reply_status, body)
    assert set(body) >= {"code", "status", "message", "details"}
    assert body["code"] == reply_status
    assert body["message"]


@SETTINGS
@given(body=bodies)
def test_rest_submit_never_fails_on_any_json(api: ApiServer, db: str, body: dict[str, Any]) -> None:
    before = count_jobs(db)
    raw = json.dumps(body, ensure_ascii=True).encode()
    reply = api.request("POST", "/jobs", raw=raw)
    if reply.status == 200:
        assert count_jobs(db) in {before, before + 1}  # a replayed idempotency key stores nothing
        assert reply.body["job_id"] > 0
    else:
        assert_refused_cleanly(reply.status, reply.body)
        assert count_jobs(db) == before


@SETTINGS
@given(raw=st.binary(max_size=200))
def test_rest_submit_refuses_arbitrary_bytes(api: ApiServer, db: str, raw: bytes) -> None:
    before = count_jobs(db)
    reply = api.request("POST", "/jobs", raw=raw)
    if reply.status == 200:  # the bytes happened to be a valid job
        return
    assert_refused_cleanly(reply.status, reply.body)
    assert count_jobs(db) == before


@SETTINGS
@given(params=st.dictionaries(st.sampled_from(["status", "type", "page_size", "page_token", "x"]), odd_text))
def test_rest_list_with_any_query(api: ApiServer, params: dict[str, str]) -> None:
    from urllib.parse import urlencode

    query = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in params.items()})
    reply = api.get(f"/jobs?{query}")
    if reply.status != 200:
        assert_refused_cleanly(reply.status, reply.body)


@SETTINGS
@given(
    job_type=odd_text,
    priority=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    max_attempts=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    timeout=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    seconds=st.integers(min_value=-(2**40), max_value=2**40),
    payload=st.dictionaries(odd_text, json_values, max_size=4),
)
def test_grpc_submit_never_fails_on_any_values(
    stub: JobServiceStub,
    db: str,
    job_type: str,
    priority: int,
    max_attempts: int,
    timeout: int,
    seconds: int,
    payload: dict[str, Any],
) -> None:
    before = count_jobs(db)
    try:
        request = pb.SubmitJobRequest(
            type=job_type, priority=priority, max_attempts=max_attempts, timeout_seconds=timeout
        )
        request.scheduled_at.seconds = seconds
        request.payload.update(payload)
    except (ValueError, TypeError):
        return  # the client library itself refuses (e.g. a lone surrogate, an integer too large)
    try:
        stub.SubmitJob(request, timeout=10)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert error.details()
        assert count_jobs(db) == before
    else:
        assert count_jobs(db) == before + 1


@pytest.mark.parametrize("depth", [50, 90, 500, 5000])
def test_deeply_nested_payloads_are_refused_or_stored_never_crash(api: ApiServer, db: str, depth: int) -> None:
    raw = ('{"type": "deep", "payload": ' + '{"a": ' * depth + "1" + "}" * depth + "}").encode()
    reply = api.request("POST", "/jobs", raw=raw)
    if reply.status == 200:
        assert api.get(f"/jobs/{reply.body['job_id']}").status == 200
    else:
        assert_refused_cleanly(reply.status, reply.body)
    assert api.get("/health").body == {"status": "ok"}


def test_grpc_payload_over_the_message_limit_is_refused(stub: JobServiceStub) -> None:
    payload = struct_pb2.Struct()
    payload.update({"blob": "x" * (17 * 1024 * 1024)})
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitJob(pb.SubmitJobRequest(type="huge", payload=payload), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.GetStats(pb.GetStatsRequest()).status_breakdown["READY"] == 0


def test_rest_body_over_the_limit_is_413(api: ApiServer, db: str) -> None:
    raw = json.dumps({"type": "huge", "payload": {"blob": "x" * (17 * 1024 * 1024)}}).encode()
    reply = api.request("POST", "/jobs", raw=raw)
    assert reply.status == 413
    assert reply.body["status"] == "RESOURCE_EXHAUSTED"
    assert count_jobs(db) == 0


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
def test_grpc_payload_numbers_json_cannot_hold_are_refused(stub: JobServiceStub, db: str, number: float) -> None:
    before = count_jobs(db)
    payload = struct_pb2.Struct()
    payload.update({"ok": None, "nested": {"values": [1, number]}})
    with pytest.raises(grpc.RpcError) as caught:
        stub.SubmitJob(pb.SubmitJobRequest(type="numbers", payload=payload), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "payload" in caught.value.details()
    assert count_jobs(db) == before
    payload.update({"nested": {"values": [1, None, 2.5]}})
    stored = stub.SubmitJob(pb.SubmitJobRequest(type="numbers", payload=payload), timeout=10).job
    assert json_format.MessageToDict(stored.payload) == {"ok": None, "nested": {"values": [1, None, 2.5]}}
    assert count_jobs(db) == before + 1
