"""The egress policy (shared/egress.py): outbound connections never reach inside unless opened on purpose.

The process tests run a real HTTP listener on 127.0.0.1 that counts every TCP connection it accepts, real
executors running ``http_request`` and ``jobs.callback`` jobs, and real api processes; they prove the
listener is never contacted unless EGRESS_ALLOW_NETWORKS opens its address, also through a redirect
from an allowed host, and that the refusal is permanent (one attempt) and says nothing about the port.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import grpc
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from sqlalchemy import Engine

from services.api.settings import ApiSettings
from services.executor.settings import ExecutorSettings
from services.scheduler.settings import SchedulerSettings
from shared.egress import DEFAULT_DENY_PORTS, EgressPolicy, EgressRefused, EgressResolver, address_kind, host_address
from shared.jobs import Job, JobStatus
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from shared.settings import SettingsError
from tests.support.api import ApiServer, refused_callback_urls, running_api
from tests.support.executors import Executor, submit, wait_for_jobs
from tests.support.processes import ROOT, free_port, wait_until

REFUSED = "which the egress policy refuses"
# Finished, or waiting for a retry: a refused attempt must be the first and only one.
SETTLED = {*JobStatus} - {JobStatus.READY, JobStatus.PROCESSING}


class Listener:
    """An HTTP server on one address that counts the TCP connections it accepts, and answers 200, or a
    redirect to ``?to=<url>``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.connections = 0
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target = parse_qs(urlsplit(self.path).query).get("to")
                body = b"internal secret"
                self.send_response(302 if target else 200)
                if target:
                    self.send_header("Location", target[0])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                listener.connections += 1  # every accepted connection, whether or not it sends a request
                return True

        self.server = Server((host, 0), Handler)
        self.host = host
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def redirect(self, to: str) -> str:
        return self.url(f"/hop?to={quote(to, safe='')}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    running = Listener()
    yield running
    running.close()


@pytest.fixture
def other_host() -> Iterator[Listener]:
    """A second loopback address (Linux answers on all of 127/8): the 'allowed host' that redirects."""
    running = Listener("127.0.0.2")
    yield running
    running.close()


def run_http_requests(engine: Engine, urls: list[str]) -> dict[str, Job]:
    """Submit one http_request job per URL (3 attempts each) and wait until each settles; jobs by URL."""
    ids = {url: submit(engine, "http_request", {"url": url}, max_attempts=3)[0] for url in urls}
    jobs = wait_for_jobs(engine, list(ids.values()), SETTLED, timeout=60)
    return {url: jobs[job_id] for url, job_id in ids.items()}


def assert_refused_at_once(jobs: dict[str, Job], reason: str = REFUSED) -> None:
    for url, job in jobs.items():
        assert (job.status, job.attempts) == (JobStatus.FAILED, 1), (url, job.status, job.error_message)
        assert reason in (job.error_message or ""), (url, job.error_message)


# -- the policy itself ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.255.0.9", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("224.0.0.251", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("255.255.255.255", "a reserved address"),
        ("192.0.2.1", "a reserved address"),
        ("::", "an unspecified address"),
        ("::1", "a loopback address"),
        ("fd00::1", "a private address"),
        ("fe80::1%eth0", "a link-local address"),
        ("ff02::1", "a multicast address"),
        ("2001:db8::1", "a reserved address"),
        ("100::1", "a reserved address"),
        ("::ffff:127.0.0.1", "an IPv6 form of a loopback address"),
        ("::ffff:169.254.169.254", "an IPv6 form of a link-local address"),
        ("::10.0.0.1", "an IPv6 form of a private address"),
        ("64:ff9b::a9fe:a9fe", "an IPv6 form of a link-local address"),
        ("2002:7f00:1::", "an IPv6 form of a loopback address"),
        ("93.184.215.14", None),
        ("8.8.8.8", None),
        ("::ffff:8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_internal_addresses_are_recognised_in_every_form(address: str, kind: str | None) -> None:
    assert address_kind(ip_address(address)) == kind


def test_hosts_written_as_addresses_are_read_as_the_operating_system_reads_them() -> None:
    loopback = ip_address("127.0.0.1")
    for host in (
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "127.0.0.1.",
        "localhost",
        "LocalHost.",
        "a.localhost",
    ):
        assert host_address(host) == loopback, host
    assert host_address("[::1]") == ip_address("::1")
    assert host_address("example.com") is None and host_address("1e100.net") is None
    for bad in ("1.2.3.4.5", "999.1.1.1", "::g"):
        with pytest.raises(EgressRefused, match="is not a valid"):
            host_address(bad)


def test_allowed_networks_open_ranges_but_not_the_services_own_ports() -> None:
    policy = EgressPolicy.from_env({"EGRESS_ALLOW_NETWORKS": " 10.20.0.0/16 , fd00::/8,127.0.0.1"}).closing(9100)
    assert policy.refusal(ip_address("10.20.3.4"), 443) is None
    assert policy.refusal(ip_address("::ffff:10.20.3.4"), 443) is None  # the IPv4 it carries is opened
    assert policy.refusal(ip_address("fd12::1"), 80) is None
    assert policy.refusal(ip_address("127.0.0.1"), 8080) is None
    assert "10.21.0.1 is a private address" in (policy.refusal(ip_address("10.21.0.1"), 443) or "")
    for port in (5432, 50051, 8001, 9100):
        assert "one of the service's own ports" in (policy.refusal(ip_address("10.20.3.4"), port) or "")
    assert policy.refusal(ip_address("8.8.8.8"), 5432) is None  # the internet is not the service
    assert EgressPolicy.from_env({}).allow_networks == ()
    assert EgressPolicy.from_env({"EGRESS_DENY_PORTS": "9000"}).deny_ports == {9000}


def test_the_default_deny_ports_are_the_services_own() -> None:
    assert {
        ApiSettings.grpc_port,
        ApiSettings.http_port,
        ExecutorSettings.metrics_port,
        SchedulerSettings.metrics_port,
        5432,  # PostgreSQL
        6432,  # PgBouncer
    } == DEFAULT_DENY_PORTS
    assert ApiSettings.from_env({"GRPC_PORT": "7000"}).egress.deny_ports >= {7000, 8000}
    assert ExecutorSettings.from_env({"METRICS_PORT": "9100"}).egress.deny_ports >= {9100, 50051}


@pytest.mark.parametrize("value", ["10.0.0.0/33", "10.0.0.1/8", "internal", "10.0.0.0/8;fd00::/8"])
def test_a_bad_allow_list_names_the_variable(value: str) -> None:
    for settings in (ApiSettings, ExecutorSettings):
        with pytest.raises(SettingsError, match=r"^EGRESS_ALLOW_NETWORKS: "):
            settings.from_env({"EGRESS_ALLOW_NETWORKS": value})
    with pytest.raises(SettingsError, match=r"^EGRESS_DENY_PORTS: "):
        ExecutorSettings.from_env({"EGRESS_DENY_PORTS": "80,http"})


def test_a_bad_allow_list_stops_the_api_and_the_executor_at_start(db: str) -> None:
    env = {**os.environ, "DATABASE_URL": db, "EGRESS_ALLOW_NETWORKS": "10.0.0.0/8,not-a-network", "METRICS_PORT": "0"}
    for module in ("services.api", "services.executor"):
        started = subprocess.run(
            [sys.executable, "-m", module], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert started.returncode == 2, (module, started.stderr)
        assert "EGRESS_ALLOW_NETWORKS: 'not-a-network' is not a network" in started.stderr, (module, started.stderr)


class FixedAnswers(AbstractResolver):
    """A DNS stand-in that answers what the test says (no DNS server of our own to point names at)."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0)
            for address in self.addresses
        ]

    async def close(self) -> None:
        pass


def test_the_resolver_hands_the_connector_only_the_addresses_it_checked() -> None:
    """aiohttp connects to exactly the addresses the resolver returns: filtering them is the pinning."""
    answers = FixedAnswers(["127.0.0.1", "93.184.215.14", "10.0.0.7", "::ffff:169.254.169.254"])
    found = asyncio.run(EgressResolver(EgressPolicy(), answers).resolve("rebinding.example", 80))
    assert [entry["host"] for entry in found] == ["93.184.215.14"]
    resolver = EgressResolver(EgressPolicy(), FixedAnswers(["127.0.0.1", "169.254.169.254"]))
    with pytest.raises(EgressRefused, match=r"rebinding\.example resolves only to addresses the egress policy refuses"):
        asyncio.run(resolver.resolve("rebinding.example", 80))


# -- http_request through a real executor --------------------------------------------------------------


def test_http_request_never_contacts_internal_addresses_by_default(
    engine: Engine, start_executor: Callable[..., Executor], listener: Listener
) -> None:
    start_executor("--types", "http_request", env={"RETRY_BACKOFF_BASE_SECONDS": "60"})
    closed = free_port()
    port = listener.port
    urls = [
        listener.url(),
        f"http://127.0.0.1:{closed}/",  # nothing listens: the same answer as above
        f"http://localhost:{port}/",
        f"http://LOCALHOST.:{port}/",
        f"http://2130706433:{port}/",
        f"http://0x7f000001:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://127.1:{port}/",
        f"http://[::1]:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[::ffff:7f00:1]:{port}/",
        f"http://user:pw@127.0.0.1:{port}/?token=t",
        f"http://0.0.0.0:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://100.64.0.1/",
        f"https://127.0.0.1:{port}/",
    ]
    jobs = run_http_requests(engine, urls)
    assert listener.connections == 0
    assert_refused_at_once(jobs)
    # Open and closed ports get the same message: nothing was connected to, so nothing can differ.
    open_message = (jobs[listener.url()].error_message or "").replace(str(port), "PORT")
    assert open_message == (jobs[f"http://127.0.0.1:{closed}/"].error_message or "").replace(str(closed), "PORT")
    assert "pw" not in (jobs[f"http://user:pw@127.0.0.1:{port}/?token=t"].error_message or "")


def test_a_host_name_is_checked_where_it_resolves(
    engine: Engine, start_executor: Callable[..., Executor], listener: Listener
) -> None:
    name = socket.gethostname()
    try:
        resolved = {entry[4][0] for entry in socket.getaddrinfo(name, listener.port, type=socket.SOCK_STREAM)}
    except OSError:
        resolved = set()
    if "127.0.0.1" not in resolved or host_address(name) is not None:
        pytest.skip(f"needs a host name that DNS resolves to 127.0.0.1; this machine's {name!r} gives {resolved}")
    start_executor("--types", "http_request")
    jobs = run_http_requests(engine, [listener.url(host=name)])
    assert listener.connections == 0
    assert_refused_at_once(jobs, f"{name} resolves only to addresses the egress policy refuses")


def test_a_redirect_from_an_allowed_host_to_an_internal_one_is_refused_at_the_hop(
    engine: Engine, start_executor: Callable[..., Executor], listener: Listener, other_host: Listener
) -> None:
    executor = start_executor("--types", "http_request", env={"EGRESS_ALLOW_NETWORKS": "127.0.0.2/32"})
    port = listener.port
    to_internal = [
        listener.url("/secret"),
        f"http://localhost:{port}/",
        f"http://2130706433:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        "http://169.254.169.254/latest/meta-data/",
    ]
    jobs = run_http_requests(engine, [other_host.redirect(url) for url in to_internal])
    assert listener.connections == 0
    assert other_host.connections == len(to_internal)  # the allowed host was asked, and only once each
    assert_refused_at_once(jobs)
    assert f"redirected to {listener.url('/secret')}: 127.0.0.1 is a loopback address" in (
        jobs[other_host.redirect(listener.url("/secret"))].error_message or ""
    )

    # Finding 9: a redirect to another scheme fails at once too, instead of being retried.
    schemes = run_http_requests(engine, [other_host.redirect("file:///etc/passwd"), other_host.redirect("gopher://x/")])
    assert_refused_at_once(schemes, "only http:// and https:// URLs are followed")
    assert "redirected to file:///etc/passwd" in (
        schemes[other_host.redirect("file:///etc/passwd")].error_message or ""
    )

    # Inside an opened range, the service's own ports stay closed: the executor's metrics, for one.
    own = run_http_requests(engine, [f"http://127.0.0.2:{executor.metrics_port}/metrics"])
    assert_refused_at_once(own, f"port {executor.metrics_port} of 127.0.0.2 is one of the service's own ports")


def test_allow_networks_opens_the_listener_on_purpose(
    engine: Engine, start_executor: Callable[..., Executor], listener: Listener
) -> None:
    start_executor("--types", "http_request", env={"EGRESS_ALLOW_NETWORKS": "127.0.0.1/32"})
    ok, redirected, other = (
        listener.url("/ok"),
        listener.redirect(listener.url("/ok")),
        f"http://[::1]:{listener.port}/",
    )
    jobs = run_http_requests(engine, [ok, redirected, other])
    for url in (ok, redirected):
        assert jobs[url].status is JobStatus.COMPLETED, jobs[url].error_message
        assert (jobs[url].result or {}).get("body") == "internal secret"
    assert listener.connections == 3  # /ok, and the redirect's two hops
    assert_refused_at_once({other: jobs[other]})  # ::1 is not in 127.0.0.1/32


# -- completion webhooks -------------------------------------------------------------------------------


CALLBACK_URLS = [
    "http://127.0.0.1/hook",
    "http://127.0.0.1:8193/metrics",
    "http://localhost:5432/",
    "http://[::1]/hook",
    "http://0x7f000001/hook",
    "http://2130706433/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://10.0.0.5/hook",
    "http://192.168.0.1/hook",
    "http://100.100.100.200/latest/meta-data/",
]


def test_callback_urls_written_as_internal_addresses_are_invalid_at_submit(
    api: ApiServer, stub: JobServiceStub, db: str
) -> None:
    for url, message in zip(CALLBACK_URLS, refused_callback_urls(api, stub, CALLBACK_URLS), strict=True):
        assert REFUSED in message, (url, message)
    assert refused_callback_urls(api, stub, ["http://[fe80::1]/hook"]) == [
        f"fe80::1 is a link-local address, {REFUSED} (EGRESS_ALLOW_NETWORKS opens ranges)"
    ]
    schedule = pb.Schedule(
        name="nightly", cron="0 3 * * *", job=pb.SubmitJobRequest(type="echo", callback_url="http://127.0.0.1/")
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateSchedule(pb.CreateScheduleRequest(schedule=schedule))
    assert (caught.value.details() or "").startswith("schedule.job.callback_url: 127.0.0.1 is a loopback address")
    assert api.get("/jobs").body["jobs"] == []
    # A host name is judged where it resolves, when the webhook is delivered.
    assert api.post("/jobs", {"type": "echo", "callback_url": "https://hooks.example.com/jobs"}).status == 200


def test_a_webhook_to_an_internal_address_fails_at_delivery_without_contact(
    db: str, tmp_path: Path, start_executor: Callable[..., Executor], listener: Listener
) -> None:
    """An api whose allow list is wider than the executors' (or a name that resolves inside): the
    executor's own check stops the delivery, at once and for good."""
    with running_api(db, tmp_path, {"EGRESS_ALLOW_NETWORKS": "127.0.0.1/32"}) as api:
        for url in ("http://127.0.0.1:5432/", f"http://[::1]:{listener.port}/", "http://10.0.0.1/"):
            reply = api.post("/jobs", {"type": "echo", "callback_url": url})
            assert reply.status == 400, (url, reply.body)
            assert REFUSED in reply.body["message"] or "own ports" in reply.body["message"], reply.body
        reply = api.post("/jobs", {"type": "echo", "callback_url": listener.url("/hook")})
        assert reply.status == 200, reply.body
        job_id = reply.body["job_id"]
        start_executor()  # default policy: nothing internal
        found: dict[str, Any] = {}

        def delivery_settled() -> bool:
            found.update(api.get(f"/jobs/{job_id}").body)
            return bool(found["callback"] and found["callback"]["state"] in ("FAILED", "DELIVERED"))

        wait_until(delivery_settled, 60, 0.1, "the webhook delivery to settle")
        delivery = api.get(f"/jobs/{found['callback']['delivery_job_id']}").body
    assert listener.connections == 0
    assert found["callback"]["state"] == "FAILED" and found["callback"]["attempts"] == 1
    assert delivery["status"] == "FAILED" and delivery["attempts"] == 1 and delivery["max_attempts"] > 1
    assert re.search(r"127\.0\.0\.1 is a loopback address, which the egress policy refuses", delivery["error_message"])
