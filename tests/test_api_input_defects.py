"""Input that used to crash the api or change silently (issue 15, findings 7 and 8): NUL characters in any
string a request carries, forged page tokens, payload integers a Struct cannot hold, and the text
``\\u0000`` in a payload. Against the real api; see docs/security.md."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import grpc
import pytest
import sqlalchemy
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from jobclient import JobClient
from jobclient.errors import InvalidArgument as ClientInvalidArgument
from shared.database.engine import create_database_engine, describe_failed_statement, translate_errors
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer
from tests.support.rpc_errors import field_violations

JOB_SERVICE = pb.DESCRIPTOR.services_by_name["JobService"]
NUL = "a\x00b"


def assert_no_traceback(api: ApiServer) -> None:
    output = api.process.output()
    assert "Traceback" not in output and "failed unexpectedly" not in output, output[-3000:]


def rest_field(body: dict[str, Any]) -> str:
    """The field a REST error's BadRequest detail names."""
    [field] = [v["field"] for detail in body["details"] for v in detail.get("fieldViolations", [])]
    return str(field)


def refused_field(call: Any, request: Message) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    [field] = field_violations(caught.value)
    return field


# -- NUL characters (finding 7) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "request_message", "field"),
    [
        ("ListJobs", pb.ListJobsRequest(type=NUL), "type"),
        ("GetSchedule", pb.GetScheduleRequest(name=NUL), "name"),
        ("DeleteSchedule", pb.DeleteScheduleRequest(name=NUL), "name"),
        ("DeleteTypeLimits", pb.DeleteTypeLimitsRequest(type=NUL), "type"),
    ],
)
def test_nul_in_lookups_is_invalid_argument_naming_the_field(
    api: ApiServer, stub: JobServiceStub, method: str, request_message: Message, field: str
) -> None:
    assert refused_field(getattr(stub, method), request_message) == field
    assert_no_traceback(api)


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", f"/jobs?type={quote(NUL)}", "type"),
        ("GET", f"/schedules/{quote(NUL)}", "name"),
        ("DELETE", f"/schedules/{quote(NUL)}", "name"),
        ("DELETE", f"/limits/{quote(NUL)}", "type"),
    ],
)
def test_nul_in_lookups_over_rest_is_400(api: ApiServer, method: str, path: str, field: str) -> None:
    reply = api.request(method, path)
    assert reply.status == 400, reply.body
    assert rest_field(reply.body) == field
    assert_no_traceback(api)


def _string_paths(descriptor: Descriptor, prefix: str = "", depth: int = 0) -> list[tuple[str, FieldDescriptor]]:
    """Every string field a request of this type can carry (through the service's own messages)."""
    found = []
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            found.append((prefix + field.name, field))
        elif field.message_type is not None and field.message_type.full_name.startswith("jobs.") and depth < 4:
            found += _string_paths(field.message_type, f"{prefix}{field.name}.", depth + 1)
    return found


def _with_nul_at(descriptor: Descriptor, path: str) -> tuple[Message, str]:
    """A request of ``descriptor`` with a NUL in the string at ``path``, and the field the api should name."""
    request = message_factory.GetMessageClass(descriptor)()
    target: Any = request
    named = []
    *outer, last = path.split(".")
    for name in outer:
        field = target.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            target = getattr(target, name).add()
            named.append(f"{name}[0]")
        else:
            target = getattr(target, name)
            named.append(name)
    field = target.DESCRIPTOR.fields_by_name[last]
    if field.is_repeated:
        getattr(target, last).append(NUL)
        named.append(f"{last}[0]")
    else:
        setattr(target, last, NUL)
        named.append(last)
    return request, ".".join(named)


def test_every_string_of_every_rpc_refuses_nul(api: ApiServer, stub: JobServiceStub) -> None:
    """New RPCs are covered without a test of their own: no string of any request can reach SQL with a NUL."""
    checked = 0
    for method in JOB_SERVICE.methods:
        for path, _ in _string_paths(method.input_type):
            request, field = _with_nul_at(method.input_type, path)
            call = getattr(stub, method.name)
            if method.server_streaming:
                with pytest.raises(grpc.RpcError) as caught:
                    next(call(request, timeout=10))
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method.name, path)
                assert field_violations(caught.value) == [field]
            else:
                assert refused_field(call, request) == field, (method.name, path)
            checked += 1
    assert checked >= 20
    assert_no_traceback(api)


# -- forged page tokens (finding 7) -----------------------------------------------------------------------


@pytest.mark.parametrize("job_id", [2**63, 10**30, -1, 0])
def test_a_page_token_beyond_bigint_is_invalid_argument(api: ApiServer, stub: JobServiceStub, job_id: int) -> None:
    token = base64.urlsafe_b64encode(f"v1|{job_id}||".encode()).decode().rstrip("=")
    assert refused_field(stub.ListJobs, pb.ListJobsRequest(page_token=token)) == "page_token"
    reply = api.get(f"/jobs?page_token={token}")
    assert reply.status == 400 and rest_field(reply.body) == "page_token"
    assert_no_traceback(api)
    if job_id > 2**62:
        assert str(job_id) not in api.process.output()


def test_failed_statements_are_described_without_their_values(db: str) -> None:
    """What the api logs of a statement that failed unexpectedly never holds the values it was given
    (PostgreSQL's own message quotes them: it is left out), and SQLAlchemy's dump of them is hidden."""
    engine = create_database_engine(db, "tests")
    secret = "secret-parameter-value-0123456789"
    try:
        with pytest.raises(sqlalchemy.exc.DBAPIError) as caught, translate_errors(), engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT CAST(:value AS integer)"), {"value": secret})
        assert "[SQL parameters hidden" in str(caught.value)
        described = describe_failed_statement(caught.value)
        assert described is not None and secret not in described
        assert described == "InvalidTextRepresentation (SQLSTATE 22P02) in: SELECT CAST(%(value)s AS integer)"
    finally:
        engine.dispose()


# -- payload numbers and \u0000 (finding 8) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/jobs", {"type": "big", "payload": {"n": 9007199254740993}}, "payload.n"),
        ("/jobs", {"type": "big", "payload": {"a": {"b": [1, 10**100]}}}, "payload.a.b[1]"),
        ("/jobs", {"type": "big", "payload": {"n": -(2**53) - 1}}, "payload.n"),
        (
            "/jobs:batch",
            {"jobs": [{"type": "big"}, {"type": "big", "payload": {"n": 2**64}}]},
            "jobs[1].payload.n",
        ),
        (
            "/schedules",
            {"name": "big", "cron": "@daily", "job": {"type": "big", "payload": {"n": 2**60}}},
            "schedule.job.payload.n",
        ),
    ],
)
def test_rest_payload_integers_beyond_2_53_are_refused_naming_them(
    api: ApiServer, db: str, path: str, body: dict[str, Any], field: str
) -> None:
    reply = api.post(path, body)
    assert reply.status == 400, reply.body
    assert rest_field(reply.body) == field
    assert "2^53" in reply.body["message"]
    assert api.get("/jobs").body["jobs"] == []


def test_rest_payload_numbers_that_fit_are_stored_exactly(api: ApiServer, db: str) -> None:
    payload = {"max": 2**53, "min": -(2**53), "float": 1e100, "small": 7, "half": 0.5}
    job = api.post("/jobs", {"type": "exact", "payload": payload}).body
    stored = api.get(f"/jobs/{job['job_id']}").body["payload"]
    assert stored == payload
    assert isinstance(stored["max"], int) and isinstance(stored["float"], float)


def test_grpc_payload_doubles_are_stored_as_sent(stub: JobServiceStub, db: str) -> None:
    """Over gRPC a payload number arrives as a double: whatever double the client sent comes back."""
    request = pb.SubmitJobRequest(type="doubles")
    request.payload.update({"big": 9007199254740994.0, "huge": 1e300})
    job = stub.SubmitJob(request).job
    stored = stub.GetJob(pb.GetJobRequest(job_id=job.job_id)).payload
    assert stored.fields["big"].number_value == 9007199254740994.0
    assert stored.fields["huge"].number_value == 1e300


def test_the_python_client_refuses_integers_it_cannot_send_exactly(api: ApiServer, db: str) -> None:
    with JobClient(f"127.0.0.1:{api.grpc_port}") as client:
        with pytest.raises(ClientInvalidArgument) as caught:
            client.submit("big", {"list": [2**53 + 1]})
        assert caught.value.field == "payload.list[0]"
        assert client.submit("big", {"n": 2**53}).payload == {"n": 2**53}


def test_the_text_backslash_u0000_is_stored_as_written(api: ApiServer, stub: JobServiceStub, db: str) -> None:
    text = "\\u0000"  # six characters: a backslash, u, and four zeros
    raw = json.dumps({"type": "text", "payload": {"s": text, text: [text, "\\\\u0000"]}}).encode()
    assert b'"\\\\u0000"' in raw
    job = api.request("POST", "/jobs", raw=raw)
    assert job.status == 200, job.body
    assert api.get(f"/jobs/{job.body['job_id']}").body["payload"] == {"s": text, text: [text, "\\\\u0000"]}

    request = pb.SubmitJobRequest(type="text")
    request.payload.update({"s": text})
    stored = stub.GetJob(pb.GetJobRequest(job_id=stub.SubmitJob(request).job.job_id)).payload
    assert stored.fields["s"].string_value == text


def test_a_real_nul_in_a_payload_is_still_refused_naming_it(api: ApiServer, stub: JobServiceStub, db: str) -> None:
    reply = api.request("POST", "/jobs", raw=b'{"type": "text", "payload": {"a": {"s": "x\\u0000"}}}')
    assert reply.status == 400
    assert rest_field(reply.body) == "payload.a.s"
    request = pb.SubmitJobRequest(type="text")
    request.payload.update({"list": ["ok", "\\u0000", "\x00"]})
    assert refused_field(stub.SubmitJob, request) == "payload.list[2]"
    batch = pb.SubmitJobsRequest(jobs=[pb.SubmitJobRequest(type="text"), request])
    assert refused_field(stub.SubmitJobs, batch) == "jobs[1].payload.list[2]"
    assert api.get("/jobs").body["jobs"] == []
