"""Completion webhooks with real processes: api, scheduler and executors, and a real HTTP receiver.

A job submitted with a callback_url makes the database queue a jobs.callback delivery job when it
finishes; the executors POST the finished job to the receiver, signed when they have a secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import psycopg2
import pytest

from services.executor import JobContext, PermanentError
from services.executor.__main__ import build_parser
from services.executor.handlers import callback, http_request
from services.executor.settings import CallbackSettings, ExecutorSettings
from shared.egress import EgressPolicy
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from shared.settings import SettingsError
from tests.support.api import ApiServer, insecure_channel, refused_callback_urls, running_api
from tests.support.processes import FAST_WORKER_ENV, ROOT, ServiceProcess, free_port, wait_until

SECRET = "test-webhook-secret-0123456789abcdef"
# The receiver runs on 127.0.0.1, which the egress policy refuses unless opened: the api (literal
# callback_url at submit) and the executors (at delivery) open it on purpose. tests/test_egress.py proves
# that without this nothing reaches it.
ALLOW_RECEIVER = {"EGRESS_ALLOW_NETWORKS": "127.0.0.1/32"}


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    answered: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A webhook receiver on 127.0.0.1: answers each path with the statuses planned for it, then 200."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.plan: dict[str, list[int]] = {}
        self.always: dict[str, int] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    planned = receiver.plan.get(self.path)
                    status = planned.pop(0) if planned else receiver.always.get(self.path, 200)
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    receiver.deliveries.append(Delivery(self.path, headers, body, status))
                reply = b"nope" if status >= 300 else b"ok"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def to(self, path: str) -> list[Delivery]:
        with self.lock:
            return [delivery for delivery in self.deliveries if delivery.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def api_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """This module's api: like every test's, with the receiver's address opened."""
    with running_api(database_url, tmp_path_factory.mktemp("callbacks-api"), ALLOW_RECEIVER) as api:
        yield api


@pytest.fixture(scope="module")
def grpc_channel(api_server: ApiServer) -> Iterator[grpc.Channel]:
    with insecure_channel(api_server) as channel:
        yield channel


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@contextmanager
def workers(database_url: str, log_dir: Path, executors: int = 1, secret: str | None = SECRET) -> Iterator[list[Path]]:
    """A scheduler (it promotes retries) and executors, with the signing secret or without; their logs."""
    env = {"DATABASE_URL": database_url, **FAST_WORKER_ENV, **ALLOW_RECEIVER}
    if secret is not None:
        env["CALLBACK_SIGNING_SECRET"] = secret
    processes = [ServiceProcess("services.scheduler", env, log_dir=log_dir).start()]
    processes += [
        ServiceProcess("services.executor", env, ["--concurrency", "8"], log_dir=log_dir).start()
        for _ in range(executors)
    ]
    try:
        yield [process.log_path for process in processes]
    finally:
        for process in processes:
            process.stop()


def submit(api: ApiServer, callback_url: str, **fields: Any) -> dict[str, Any]:
    reply = api.post("/jobs", {"type": "echo", "payload": {"n": 1}, "callback_url": callback_url, **fields})
    assert reply.status == 200, reply.body
    job: dict[str, Any] = reply.body
    return job


def get(api: ApiServer, job_id: int) -> dict[str, Any]:
    reply = api.get(f"/jobs/{job_id}")
    assert reply.status == 200, reply.body
    job: dict[str, Any] = reply.body
    return job


def wait_for_callback_state(api: ApiServer, job_id: int, state: str, timeout: float = 60) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def reached() -> bool:
        found.update(get(api, job_id))
        return bool(found["callback"] and found["callback"]["state"] == state)

    wait_until(reached, timeout, interval=0.1, what=f"job {job_id}'s callback to be {state} (last: {found})")
    return found


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def verify_signature(header: str, body: bytes, secret: str, tolerance_seconds: int = 300) -> bool:
    """The receiver's check, as docs/callbacks.md shows it."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - timestamp) <= tolerance_seconds
    return fresh and hmac.compare_digest(expected, fields["v1"])


def documented_verifier() -> Any:
    """The verify_webhook function docs/callbacks.md tells receivers to use, run as written."""
    text = (ROOT / "docs" / "callbacks.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "docs/callbacks.md", "exec"), namespace)
    return namespace["verify_webhook"]


def test_a_completed_job_is_posted_once_signed_and_shaped_like_get(
    api: ApiServer, stub: JobServiceStub, receiver: Receiver, db: str, tmp_path: Path
) -> None:
    with workers(db, tmp_path) as logs:
        job = submit(api, receiver.url("/hook"), payload={"to": "a@example.com", "n": 3}, idempotency_key="k-1")
        assert job["callback"] == {
            "url": receiver.url("/hook"),
            "state": "WAITING",
            "attempts": 0,
            "last_error": None,
            "delivery_job_id": 0,
            "delivered_at": None,
        }
        shown = wait_for_callback_state(api, job["job_id"], "DELIVERED")

    [delivery] = receiver.to("/hook")
    callback = shown["callback"]
    assert callback["attempts"] == 1 and callback["last_error"] is None
    assert parse_time(callback["delivered_at"]) >= parse_time(shown["finished_at"])
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["user-agent"].startswith("jobservice-webhooks/")
    assert delivery.headers["webhook-id"] == str(callback["delivery_job_id"])
    assert verify_signature(delivery.headers["webhook-signature"], delivery.body, SECRET)
    assert not verify_signature(delivery.headers["webhook-signature"], delivery.body + b" ", SECRET)
    assert not verify_signature(delivery.headers["webhook-signature"], delivery.body, SECRET + "x")
    verify_webhook = documented_verifier()
    assert verify_webhook(SECRET, delivery.body, delivery.headers["webhook-signature"])
    assert not verify_webhook(
        SECRET, delivery.body.replace(b"COMPLETED", b"FAILED"), delivery.headers["webhook-signature"]
    )
    assert not verify_webhook(SECRET, delivery.body, "garbage")

    # The body is the job as GET /jobs/{id} shows it, field for field, as of its finish.
    body = delivery.json
    assert body["event"] == "job.finished"
    sent = body["job"]
    assert set(sent) == set(shown)
    for name, value in shown.items():
        if name != "callback":
            assert sent[name] == value, name
    assert sent["status"] == "COMPLETED" and sent["result"] == {"to": "a@example.com", "n": 3}
    assert sent["callback"] == {**callback, "state": "SENDING", "attempts": 0, "delivered_at": None}

    # gRPC shows the same; the delivery is a job of its own, carrying the job's trace.
    reply = stub.GetJob(pb.GetJobRequest(job_id=job["job_id"]))
    assert reply.callback.state == pb.Callback.DELIVERED
    assert reply.callback.delivery_job_id == callback["delivery_job_id"]
    delivery_job = get(api, callback["delivery_job_id"])
    assert delivery_job["type"] == "jobs.callback" and delivery_job["status"] == "COMPLETED"
    assert delivery_job["payload"]["url"] == receiver.url("/hook")
    assert delivery_job["payload"]["job_id"] == job["job_id"]
    assert delivery_job["callback"] is None  # deliveries never have webhooks of their own

    # The secret is nowhere: not in the logs, not in any job.
    for log in logs:
        assert SECRET not in log.read_text()
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs WHERE CAST(jobs.* AS text) LIKE %s", (f"%{SECRET}%",))
        assert cur.fetchone() == (0,)


def test_a_failing_receiver_gets_retries_with_the_same_webhook_id(
    api: ApiServer, receiver: Receiver, db: str, tmp_path: Path
) -> None:
    receiver.plan["/flaky"] = [500, 500]
    with workers(db, tmp_path):
        job = submit(api, receiver.url("/flaky"))
        shown = wait_for_callback_state(api, job["job_id"], "DELIVERED")
    deliveries = receiver.to("/flaky")
    assert [d.answered for d in deliveries] == [500, 500, 200]
    assert {d.headers["webhook-id"] for d in deliveries} == {str(shown["callback"]["delivery_job_id"])}
    assert all(verify_signature(d.headers["webhook-signature"], d.body, SECRET) for d in deliveries)
    assert shown["callback"]["attempts"] == 3
    assert "HTTP 500" not in (shown["callback"]["last_error"] or "")  # the delivery succeeded in the end


def test_a_receiver_that_never_accepts_leaves_the_callback_failed(
    api: ApiServer, receiver: Receiver, db: str, tmp_path: Path
) -> None:
    receiver.always["/down"] = 503
    with workers(db, tmp_path):
        job = submit(api, receiver.url("/down"))
        shown = wait_for_callback_state(api, job["job_id"], "FAILED", timeout=90)
    callback = shown["callback"]
    delivery_job = get(api, callback["delivery_job_id"])
    assert callback["attempts"] == delivery_job["max_attempts"] == len(receiver.to("/down"))
    assert "HTTP 503" in callback["last_error"] and callback["delivered_at"] is None
    assert delivery_job["status"] == "FAILED" and delivery_job["error_message"] == callback["last_error"]
    assert shown["status"] == "COMPLETED"  # the job itself is untouched


def test_failed_and_cancelled_jobs_are_posted_too(api: ApiServer, receiver: Receiver, db: str, tmp_path: Path) -> None:
    with workers(db, tmp_path):
        failed = submit(api, receiver.url("/failed"), type="fail", payload={"message": "boom"}, max_attempts=1)
        later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
        waiting = submit(api, receiver.url("/cancelled"), scheduled_at=later)
        assert api.post(f"/jobs/{waiting['job_id']}:cancel").status == 200
        running = submit(api, receiver.url("/cancelled-running"), type="sleep", payload={"seconds": 30})
        wait_until(lambda: get(api, running["job_id"])["status"] == "PROCESSING", 30, what="the sleep job to run")
        assert api.post(f"/jobs/{running['job_id']}:cancel").status == 200
        for job in (failed, waiting, running):
            wait_for_callback_state(api, job["job_id"], "DELIVERED")

    [sent_failed] = [d.json["job"] for d in receiver.to("/failed")]
    assert sent_failed["status"] == "FAILED" and "boom" in sent_failed["error_message"]
    assert sent_failed == {**get(api, failed["job_id"]), "callback": sent_failed["callback"]}
    for path, job in (("/cancelled", waiting), ("/cancelled-running", running)):
        [sent] = [d.json["job"] for d in receiver.to(path)]
        assert sent["status"] == "CANCELLED" and sent["job_id"] == job["job_id"]
        assert sent["error_message"] == "cancelled by request"


def test_without_a_secret_deliveries_are_unsigned(api: ApiServer, receiver: Receiver, db: str, tmp_path: Path) -> None:
    with workers(db, tmp_path, secret=None):
        job = submit(api, receiver.url("/plain"))
        wait_for_callback_state(api, job["job_id"], "DELIVERED")
    [delivery] = receiver.to("/plain")
    assert "webhook-signature" not in delivery.headers
    assert delivery.json["job"]["job_id"] == job["job_id"]


def test_retry_of_a_finished_job_delivers_again_with_a_new_delivery(
    api: ApiServer, receiver: Receiver, db: str, tmp_path: Path
) -> None:
    with workers(db, tmp_path):
        job = submit(api, receiver.url("/again"), type="fail", payload={"message": "boom"}, max_attempts=1)
        first = wait_for_callback_state(api, job["job_id"], "DELIVERED")["callback"]
        retried = api.post(f"/jobs/{job['job_id']}:retry")
        assert retried.status == 200
        assert retried.body["callback"]["state"] == "WAITING"
        second = wait_for_callback_state(api, job["job_id"], "DELIVERED")["callback"]
    assert second["delivery_job_id"] > first["delivery_job_id"]
    deliveries = receiver.to("/again")
    assert [d.headers["webhook-id"] for d in deliveries] == [
        str(first["delivery_job_id"]),
        str(second["delivery_job_id"]),
    ]
    assert [d.json["job"]["status"] for d in deliveries] == ["FAILED", "FAILED"]


def test_many_jobs_with_several_executors_are_each_delivered(
    api: ApiServer, stub: JobServiceStub, receiver: Receiver, db: str, tmp_path: Path
) -> None:
    count = 300
    with workers(db, tmp_path, executors=3):
        requests = [
            pb.SubmitJobRequest(type="echo", callback_url=receiver.url("/many"), idempotency_key=f"many-{i}")
            for i in range(count)
        ]
        reply = stub.SubmitJobs(pb.SubmitJobsRequest(jobs=requests))
        ids = {result.job.job_id for result in reply.results}

        def all_delivered() -> bool:
            listed = stub.ListJobs(pb.ListJobsRequest(type="echo", page_size=500)).jobs
            return len(listed) == count and all(job.callback.state == pb.Callback.DELIVERED for job in listed)

        wait_until(all_delivered, 120, interval=0.5, what="every webhook to be delivered")
    deliveries = receiver.to("/many")
    by_webhook_id = {d.headers["webhook-id"]: d.json["job"]["job_id"] for d in deliveries}
    assert len(by_webhook_id) == count  # de-duplicated by Webhook-Id: one delivery per job
    assert set(by_webhook_id.values()) == ids


def test_bad_callback_urls_are_refused_naming_the_field_and_store_nothing(
    api: ApiServer, stub: JobServiceStub, db: str
) -> None:
    bad = [
        "",
        "example.com/hook",
        "/relative/hook",
        "ftp://example.com/hook",
        "http:///no-host",
        "http://exa mple.com/hook",
        "http://example.com/\x00",
        "http://example.com:99999/hook",
        "https://example.com/" + "a" * 2048,
    ]
    assert len(refused_callback_urls(api, stub, bad)) == len(bad)
    assert refused_callback_urls(api, stub, ["mailto:ops@example.com"]) == [
        "must be an absolute http:// or https:// URL"
    ]
    # Deliveries are the service's own jobs: a client cannot have one signed for it.
    reply = api.post("/jobs", {"type": "jobs.callback", "payload": {"url": "https://example.com", "body": {}}})
    assert reply.status == 400 and reply.body["message"].startswith("type: ")
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs")
        assert cur.fetchone() == (0,)


def test_jobs_without_a_callback_show_none_and_make_no_delivery(api: ApiServer, db: str) -> None:
    job = api.post("/jobs", {"type": "echo"}).body
    assert job["callback"] is None
    assert api.post(f"/jobs/{job['job_id']}:cancel").body["status"] == "CANCELLED"
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs WHERE type = 'jobs.callback'")
        assert cur.fetchone() == (0,)


def test_a_job_stored_already_finished_is_delivered_and_a_pruned_delivery_is_unknown(
    api: ApiServer, receiver: Receiver, db: str, tmp_path: Path
) -> None:
    # No API call stores a finished job today; a job cancelled at submit because a job it depends
    # on failed would be one. The insert trigger covers it.
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO jobs (type, status, timeout_seconds, callback_url, finished_at, error_message)"
            " VALUES ('echo', 'CANCELLED', 30, %s, now(), 'a dependency failed') RETURNING job_id",
            (receiver.url("/inserted"),),
        )
        row = cur.fetchone()
        assert row is not None
    job_id = row[0]
    with workers(db, tmp_path):
        shown = wait_for_callback_state(api, job_id, "DELIVERED")
    [delivery] = receiver.to("/inserted")
    assert delivery.json["job"]["error_message"] == "a dependency failed"

    # Retention deleted the delivery job: its outcome is no longer known.
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM jobs WHERE job_id = %s", (shown["callback"]["delivery_job_id"],))
    assert get(api, job_id)["callback"] == {
        "url": receiver.url("/inserted"),
        "state": "STATE_UNSPECIFIED",
        "attempts": 0,
        "last_error": None,
        "delivery_job_id": shown["callback"]["delivery_job_id"],
        "delivered_at": None,
    }


# -- the handler and its settings, without processes ---------------------------------------------------


def deliver(payload: dict[str, Any], job_id: int = 7) -> Any:
    http_request.configure(EgressPolicy.from_env(ALLOW_RECEIVER))
    try:
        return asyncio.run(callback.deliver_callback(payload, JobContext(job_id, "jobs.callback", 1, 10, 30)))
    finally:
        http_request.configure(EgressPolicy())


def test_the_handler_signs_when_configured_and_fails_retryably_on_anything_but_2xx(receiver: Receiver) -> None:
    body = {"event": "job.finished", "job": {"job_id": 1, "payload": {"text": "héllo"}}}
    callback.configure(CallbackSettings(signing_secret=SECRET, timeout_seconds=5))
    try:
        assert deliver({"url": receiver.url("/direct"), "job_id": 1, "body": body}) == {"status": 200}
    finally:
        callback.configure(CallbackSettings())
    [delivery] = receiver.to("/direct")
    assert delivery.json == body and delivery.headers["webhook-id"] == "7"
    assert verify_signature(delivery.headers["webhook-signature"], delivery.body, SECRET)

    receiver.plan["/moved"] = [302]
    with pytest.raises(callback.CallbackDeliveryError, match=r"HTTP 302 \(redirects are not followed\)"):
        deliver({"url": receiver.url("/moved"), "body": body})
    receiver.plan["/gone?token=hidden"] = [410]
    with pytest.raises(callback.CallbackDeliveryError, match="HTTP 410: nope") as gone:
        deliver({"url": receiver.url("/gone?token=hidden"), "body": body})
    assert "hidden" not in str(gone.value)  # queries and credentials stay out of error messages
    with pytest.raises(ConnectionError) as refused:
        deliver({"url": f"http://user:pw@127.0.0.1:{free_port()}/hook?token=hidden", "body": body})
    assert "pw" not in str(refused.value) and "hidden" not in str(refused.value)
    for bad in ({"body": body}, {"url": "ftp://example.com/", "body": body}, {"url": receiver.url("/x")}):
        with pytest.raises(PermanentError):
            deliver(bad)


def test_callback_settings_check_the_secret_and_never_show_it() -> None:
    settings = ExecutorSettings.from_env({"CALLBACK_SIGNING_SECRET": SECRET, "CALLBACK_TIMEOUT_SECONDS": "2.5"})
    assert settings.callback.signing_secret == SECRET and settings.callback.timeout_seconds == 2.5
    assert SECRET not in repr(settings)
    assert ExecutorSettings.from_env({}).callback == CallbackSettings(signing_secret=None, timeout_seconds=10.0)
    with pytest.raises(SettingsError, match="CALLBACK_SIGNING_SECRET must be at least 16") as short:
        ExecutorSettings.from_env({"CALLBACK_SIGNING_SECRET": "short-secret"})
    assert "short-secret" not in str(short.value)
    with pytest.raises(SettingsError, match="CALLBACK_TIMEOUT_SECONDS"):
        ExecutorSettings.from_env({"CALLBACK_TIMEOUT_SECONDS": "31"})
    assert "CALLBACK_SIGNING_SECRET" in build_parser().format_help()
