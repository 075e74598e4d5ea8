"""Bearer tokens guard every RPC and REST call; TLS when a certificate is configured."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer, make_certificate, running_api
from tests.support.processes import ServiceProcess, free_port

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def guarded_api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    grpc_port, http_port = free_port(), free_port()
    tokens_file = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens_file.write_text(f"# operators\n{TOKEN}\n")
    env = {
        "DATABASE_URL": database_url,
        "GRPC_PORT": str(grpc_port),
        "HTTP_PORT": str(http_port),
        "API_TOKENS_FILE": str(tokens_file),
        "METRICS_REQUIRE_TOKEN": "true",
    }
    with ServiceProcess("services.api", env, log_dir=tokens_file.parent).start() as process:
        process.wait_for_port(http_port).wait_for_port(grpc_port)
        yield ApiServer(process, grpc_port, http_port)
        assert TOKEN not in process.output()


def test_grpc_needs_a_valid_token(guarded_api: ApiServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{guarded_api.grpc_port}") as channel:
        stub = JobServiceStub(channel)
        for metadata in [(), (("authorization", "Bearer wrong-token-wrong-token"),), (("authorization", TOKEN),)]:
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetStats(pb.GetStatsRequest(), metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as streamed:
            next(stub.WatchJob(pb.WatchJobRequest(job_id=1)))
        assert streamed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = stub.GetStats(pb.GetStatsRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert "PENDING" in reply.status_breakdown
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_needs_a_valid_token(guarded_api: ApiServer) -> None:
    list_services = [reflection_pb2.ServerReflectionRequest(list_services="")]
    with grpc.insecure_channel(f"127.0.0.1:{guarded_api.grpc_port}") as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            next(reflection.ServerReflectionInfo(iter(list_services)))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = next(
            reflection.ServerReflectionInfo(iter(list_services), metadata=(("authorization", f"Bearer {TOKEN}"),))
        )
        assert "jobs.v1.JobService" in {service.name for service in reply.list_services_response.service}


def test_rest_needs_a_valid_token_but_health_is_open(guarded_api: ApiServer) -> None:
    refused = guarded_api.post("/jobs", {"type": "x"})
    assert refused.status == 401
    assert refused.body["status"] == "UNAUTHENTICATED"
    wrong = guarded_api.get("/admin/stats", headers={"Authorization": "Bearer nope-nope-nope-nope"})
    assert wrong.status == 401
    ok = guarded_api.post("/jobs", {"type": "x"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status == 200 and ok.body["status"] == "READY"
    assert guarded_api.get("/health").body == {"status": "ok"}
    assert guarded_api.get("/metrics").status == 401
    assert guarded_api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200


def test_short_tokens_are_refused_at_start(database_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url, "API_TOKENS": "short"}
    process = ServiceProcess("services.api", env, log_dir=tmp_path).start()
    assert process.process is not None and process.process.wait(30) == 2
    process.stop()
    assert "API_TOKENS" in process.output()


def test_tls_for_grpc_and_rest(database_url: str, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    with running_api(database_url, tmp_path, {"TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key)}) as api:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{api.grpc_port}", credentials) as channel:
            reply = JobServiceStub(channel).SubmitJob(pb.SubmitJobRequest(type="secure"))
            assert reply.created
        context = ssl.create_default_context(cafile=str(cert))
        url = f"https://localhost:{api.http_port}/jobs/{reply.job.job_id}"
        with urllib.request.urlopen(url, context=context) as r:
            assert json.loads(r.read())["type"] == "secure"
        with pytest.raises(OSError):  # plain HTTP to the TLS port
            urllib.request.urlopen(f"http://localhost:{api.http_port}/health", timeout=5)
