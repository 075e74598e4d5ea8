"""Talking to a running api process over REST, the way curl would (and gRPC where a test needs both)."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.processes import ServiceProcess, free_port

# The bearer token of the token-guarded api the tests start (16+ characters, as the api requires).
TEST_TOKEN = "client-tests-token-0123456789abcdef"


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class ApiServer:
    process: ServiceProcess
    grpc_port: int
    http_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Reply:
        """One HTTP call; JSON bodies are decoded, error statuses are returned, not raised."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, payload, reply_headers = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, payload, reply_headers = error.code, error.read(), dict(error.headers)
        text = payload.decode()
        content_type = reply_headers.get("Content-Type", "")
        if "ndjson" in content_type:
            decoded: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        elif "json" in content_type:
            decoded = json.loads(text)
        else:
            decoded = text
        return Reply(status, decoded, reply_headers)

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, body, **kwargs)


def refused_callback_urls(api: ApiServer, stub: JobServiceStub, urls: Iterable[str]) -> list[str]:
    """Submit an echo job with each callback_url, over REST and as the second job of a gRPC SubmitJobs
    batch; each must be INVALID_ARGUMENT naming the field. The REST messages, without the field's name."""
    messages = []
    for url in urls:
        reply = api.post("/jobs", {"type": "echo", "callback_url": url})
        assert reply.status == 400, (url, reply.body)
        assert reply.body["message"].startswith("callback_url: "), reply.body
        assert reply.body["details"][-1]["fieldViolations"][0]["field"] == "callback_url"
        messages.append(reply.body["message"].removeprefix("callback_url: "))
        batch = [pb.SubmitJobRequest(type="echo", callback_url="https://example.com/ok")]
        try:
            stub.SubmitJobs(pb.SubmitJobsRequest(jobs=[*batch, pb.SubmitJobRequest(type="echo", callback_url=url)]))
        except grpc.RpcError as caught:
            assert caught.code() == grpc.StatusCode.INVALID_ARGUMENT, (url, caught)
            assert caught.details() == f"jobs[1].callback_url: {messages[-1]}", (url, caught.details())
        else:
            raise AssertionError(f"SubmitJobs accepted callback_url {url!r}")
    return messages


@contextmanager
def insecure_channel(api: ApiServer) -> Iterator[grpc.Channel]:
    """A plaintext gRPC channel to the api, closed afterwards."""
    channel = grpc.insecure_channel(f"127.0.0.1:{api.grpc_port}")
    try:
        yield channel
    finally:
        channel.close()


@contextmanager
def running_api(database_url: str, log_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[ApiServer]:
    """A real ``python -m services.api`` on free ports, stopped afterwards; ``env`` adds settings."""
    grpc_port, http_port = free_port(), free_port()
    settings = {"DATABASE_URL": database_url, "GRPC_PORT": str(grpc_port), "HTTP_PORT": str(http_port), **(env or {})}
    with ServiceProcess("services.api", settings, log_dir=log_dir).start() as process:
        process.wait_for_port(http_port).wait_for_port(grpc_port)
        yield ApiServer(process, grpc_port, http_port)


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key (PEM files in ``directory``)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key
