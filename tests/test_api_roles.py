"""Token roles (read, submit, admin), the change log, the per-token rate limit and the refusal of addresses
that keep offering wrong tokens, against real api processes (docs/security.md)."""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status

from services.api.auth import METHOD_ROLES, OPEN_METHODS, Role, TokenChecker, load_tokens
from shared.errors import PermissionDenied
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from shared.settings import SettingsError
from tests.support.api import ApiServer, running_api
from tests.support.processes import wait_until

READ = "read-token-0123456789abcdef"
SUBMIT = "submit-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
PLAIN = "plain-token-0123456789abcdef"  # no role written: admin, as before roles existed
JOB_SERVICE = pb.DESCRIPTOR.services_by_name["JobService"]


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def rich_details(error: grpc.RpcError) -> list[object]:
    status = rpc_status.from_call(error)
    assert status is not None
    found: list[object] = []
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found.append(message)
    return found


# -- the table ------------------------------------------------------------------------------------------


def test_every_rpc_of_the_proto_has_a_role() -> None:
    """Fails when an RPC is added to job_service.proto without an entry in METHOD_ROLES (the api would
    refuse it to every token); and when the table names an RPC the api does not serve."""
    served = {f"/{JOB_SERVICE.full_name}/{method.name}" for method in JOB_SERVICE.methods}
    missing = sorted(served - METHOD_ROLES.keys())
    assert not missing, f"add these RPCs to services/api/auth.py METHOD_ROLES: {missing}"
    reflection = f"/{reflection_pb2.DESCRIPTOR.services_by_name['ServerReflection'].full_name}/ServerReflectionInfo"
    assert set(METHOD_ROLES) - served == {reflection, "/metrics"}
    assert not OPEN_METHODS & METHOD_ROLES.keys()


def test_a_method_missing_from_the_table_is_refused_to_every_token() -> None:
    for checker in (TokenChecker({ADMIN: Role.ADMIN}), TokenChecker({})):  # with tokens, and without
        with pytest.raises(PermissionDenied) as refused:
            checker.authorize("/jobs.v1.JobService/PurgeEverything", f"Bearer {ADMIN}", "10.0.0.1")
        assert "role table" in refused.value.message


def test_token_entries_name_their_role(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"# people\nread={READ}\n{PLAIN}\nsubmit= {SUBMIT}\n")
    roles = load_tokens(f"admin={ADMIN}, c3VwZXItc2VjcmV0LXRva2Vu==", str(tokens_file))
    assert roles == {
        READ: Role.READ,
        SUBMIT: Role.SUBMIT,
        ADMIN: Role.ADMIN,
        PLAIN: Role.ADMIN,
        "c3VwZXItc2VjcmV0LXRva2Vu==": Role.ADMIN,  # '=' inside a token is no role
    }
    for bad, says in [
        (f"reed={READ}", "unknown role 'reed'"),
        ("read=short", "at least 16 characters"),
        (f"read={ADMIN},admin={ADMIN}", "two different roles"),
    ]:
        with pytest.raises(SettingsError, match=says):
            load_tokens(bad, "")


# -- roles against the real api -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def roles_api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    directory = tmp_path_factory.mktemp("roles")
    tokens_file = directory / "tokens"
    tokens_file.write_text(f"submit={SUBMIT}\n{PLAIN}\n")
    env = {"API_TOKENS": f"read={READ},admin={ADMIN}", "API_TOKENS_FILE": str(tokens_file)}
    with running_api(database_url, directory, env) as api:
        yield api
        output = api.process.output()
        for token in (READ, SUBMIT, ADMIN, PLAIN):
            assert token not in output


@pytest.fixture
def roles_stub(roles_api: ApiServer) -> Iterator[JobServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{roles_api.grpc_port}") as channel:
        yield JobServiceStub(channel)


def refused(call: object, request: object, token: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, metadata=bearer(token))  # type: ignore[operator]
    return caught.value


def test_read_token_reads_and_nothing_more(roles_api: ApiServer, roles_stub: JobServiceStub) -> None:
    job = roles_stub.SubmitJob(pb.SubmitJobRequest(type="roles.read"), metadata=bearer(SUBMIT)).job
    assert roles_stub.GetJob(pb.GetJobRequest(job_id=job.job_id), metadata=bearer(READ)).job_id == job.job_id
    assert roles_stub.ListJobs(pb.ListJobsRequest(type="roles.read"), metadata=bearer(READ)).jobs
    assert "READY" in roles_stub.GetStats(pb.GetStatsRequest(), metadata=bearer(READ)).status_breakdown
    roles_stub.ListSchedules(pb.ListSchedulesRequest(), metadata=bearer(READ))
    roles_stub.ListTypeLimits(pb.ListTypeLimitsRequest(), metadata=bearer(READ))

    error = refused(roles_stub.SubmitJob, pb.SubmitJobRequest(type="roles.read"), READ)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "needs a token of role submit" in (error.details() or "")
    info = rich_details(error)[0]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.metadata["needed_role"] == "submit"
    error = refused(roles_stub.CancelJob, pb.CancelJobRequest(job_id=job.job_id), READ)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "role admin" in (error.details() or "")

    rest = roles_api.post("/jobs", {"type": "roles.read"}, headers={"Authorization": f"Bearer {READ}"})
    assert rest.status == 403
    assert rest.body["status"] == "PERMISSION_DENIED" and "role submit" in rest.body["message"]
    stats = roles_api.get("/admin/stats", headers={"Authorization": f"Bearer {READ}"})
    assert stats.status == 200


def test_submit_token_submits_but_changes_nothing_else(roles_api: ApiServer, roles_stub: JobServiceStub) -> None:
    job = roles_stub.SubmitJob(pb.SubmitJobRequest(type="roles.submit"), metadata=bearer(SUBMIT)).job
    batch = pb.SubmitJobsRequest(jobs=[pb.SubmitJobRequest(type="roles.submit")])
    assert roles_stub.SubmitJobs(batch, metadata=bearer(SUBMIT)).results[0].created
    for call, request in [
        (roles_stub.CancelJob, pb.CancelJobRequest(job_id=job.job_id)),
        (roles_stub.RetryJob, pb.RetryJobRequest(job_id=job.job_id)),
        (roles_stub.SetTypeLimits, pb.SetTypeLimitsRequest(type="roles.submit", max_running=1)),
        (roles_stub.DeleteTypeLimits, pb.DeleteTypeLimitsRequest(type="roles.submit")),
        (roles_stub.DeleteSchedule, pb.DeleteScheduleRequest(name="nightly")),
    ]:
        error = refused(call, request, SUBMIT)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, call
        assert "role admin" in (error.details() or "")
    rest = roles_api.post(f"/jobs/{job.job_id}:cancel", {}, headers={"Authorization": f"Bearer {SUBMIT}"})
    assert rest.status == 403 and "role admin" in rest.body["message"]
    assert roles_stub.GetJob(pb.GetJobRequest(job_id=job.job_id), metadata=bearer(SUBMIT)).status == pb.Job.READY


def test_admin_tokens_change_and_every_change_is_logged(roles_api: ApiServer, roles_stub: JobServiceStub) -> None:
    job = roles_stub.SubmitJob(pb.SubmitJobRequest(type="roles.admin"), metadata=bearer(SUBMIT)).job
    cancelled = roles_stub.CancelJob(pb.CancelJobRequest(job_id=job.job_id), metadata=bearer(PLAIN))
    assert cancelled.status == pb.Job.CANCELLED
    roles_stub.SetTypeLimits(pb.SetTypeLimitsRequest(type="roles.admin", max_running=2), metadata=bearer(ADMIN))
    roles_stub.DeleteTypeLimits(pb.DeleteTypeLimitsRequest(type="roles.admin"), metadata=bearer(ADMIN))
    refused(roles_stub.RetryJob, pb.RetryJobRequest(job_id=job.job_id), SUBMIT)

    def logged(line: str) -> bool:
        return line in roles_api.process.output()

    for line in [
        f"CancelJob job_id={job.job_id} by admin token {fingerprint(PLAIN)}: OK",
        f"SetTypeLimits type='roles.admin' max_running=2 by admin token {fingerprint(ADMIN)}: OK",
        f"DeleteTypeLimits type='roles.admin' by admin token {fingerprint(ADMIN)}: OK",
        f"RetryJob job_id={job.job_id} by submit token {fingerprint(SUBMIT)}: PERMISSION_DENIED",
    ]:
        wait_until(lambda line=line: logged(line), timeout=10, what=line)  # type: ignore[misc]
    assert "GetJob" not in roles_api.process.output()  # reads are not changes


def test_get_caller_tells_the_console_what_it_may_do(roles_api: ApiServer) -> None:
    expected = {
        READ: ("READ", {"GetJob", "ListJobs", "WatchJob", "GetStats", "GetCaller"}, {"SubmitJob", "CancelJob"}),
        SUBMIT: ("SUBMIT", {"SubmitJob", "SubmitJobs", "GetJob"}, {"CancelJob", "RetryJob", "CreateSchedule"}),
        ADMIN: ("ADMIN", {"CancelJob", "RetryJob", "SetTypeLimits", "CreateSchedule", "SubmitJob"}, set()),
    }
    for token, (role, may, may_not) in expected.items():
        reply = roles_api.get("/caller", headers={"Authorization": f"Bearer {token}"})
        assert reply.status == 200
        assert reply.body["role"] == role
        assert reply.body["token_fingerprint"] == fingerprint(token)
        assert reply.body["authentication_enabled"] is True
        assert may <= set(reply.body["permitted_methods"])
        assert not may_not & set(reply.body["permitted_methods"])
    assert roles_api.get("/caller").status == 401


def test_without_tokens_everyone_is_admin(api: ApiServer) -> None:
    reply = api.get("/caller")
    assert reply.body["role"] == "ADMIN" and reply.body["authentication_enabled"] is False
    assert {method.name for method in JOB_SERVICE.methods} == set(reply.body["permitted_methods"])


# -- abuse limits ---------------------------------------------------------------------------------------


def test_a_token_over_its_rate_limit_is_told_when_to_come_back(database_url: str, tmp_path: Path) -> None:
    # One call per 1000 s after a burst of 2: the third call is refused however slow this machine is.
    env = {"API_TOKENS": f"{ADMIN},read={READ}", "TOKEN_RATE_LIMIT": "0.001", "TOKEN_RATE_BURST": "2"}
    with running_api(database_url, tmp_path, env) as api:
        with grpc.insecure_channel(f"127.0.0.1:{api.grpc_port}") as channel:
            stub = JobServiceStub(channel)
            for _ in range(2):
                stub.GetStats(pb.GetStatsRequest(), metadata=bearer(ADMIN))
            error = refused(stub.GetStats, pb.GetStatsRequest(), ADMIN)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "rate limit" in (error.details() or "")
            retry = [d for d in rich_details(error) if isinstance(d, error_details_pb2.RetryInfo)]
            assert retry and retry[0].retry_delay.seconds >= 1
            # Another token has a bucket of its own.
            stub.GetStats(pb.GetStatsRequest(), metadata=bearer(READ))
        reply = api.get("/admin/stats", headers={"Authorization": f"Bearer {ADMIN}"})
        assert reply.status == 429
        assert reply.body["status"] == "RESOURCE_EXHAUSTED"
        assert int(reply.headers["Retry-After"]) >= 1


def _get_from(source: str, port: int, token: str) -> tuple[int, dict[str, str]]:
    """GET /admin/stats from the local address ``source`` (127.0.0.x are all this machine's)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        connection.request("GET", "/admin/stats", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        json.loads(response.read())
        return response.status, dict(response.getheaders())
    finally:
        connection.close()


def test_an_address_offering_wrong_tokens_is_refused_for_a_while(database_url: str, tmp_path: Path) -> None:
    env = {"API_TOKENS": ADMIN, "AUTH_FAILURE_LIMIT": "3", "AUTH_FAILURE_WINDOW_SECONDS": "600"}
    with running_api(database_url, tmp_path, env) as api:
        for _ in range(5):  # calls without a token are no guesses: not counted
            assert api.get("/admin/stats").status == 401
        for attempt in range(3):
            status, _ = _get_from("127.0.0.1", api.http_port, f"guess-{attempt:04d}-0123456789abcdef")
            assert status == 401
        # The right token from that address is refused too: a guesser cannot tell a hit from a miss.
        status, headers = _get_from("127.0.0.1", api.http_port, ADMIN)
        assert status == 429 and int(headers["Retry-After"]) > 1
        with grpc.insecure_channel(f"127.0.0.1:{api.grpc_port}") as channel:
            error = refused(JobServiceStub(channel).GetStats, pb.GetStatsRequest(), ADMIN)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "failed authentications" in (error.details() or "")
        # Other addresses are not affected.
        assert _get_from("127.0.0.2", api.http_port, ADMIN)[0] == 200
        assert "3 failed authentications from 127.0.0.1" in api.process.output()
