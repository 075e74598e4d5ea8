"""The built-in handlers, each for real: called directly, and run by an executor process.

send_email talks to a local aiosmtpd server; http_request to a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import email
import json
import threading
import time
from collections.abc import Iterator
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from services.executor import JobContext, PermanentError
from services.executor.handlers import basic, http_request, send_email
from shared.egress import EgressPolicy
from shared.jobs import JobStatus
from tests.support.executors import submit, wait_for_jobs
from tests.support.processes import free_port


def context(attempt: int = 1, max_attempts: int = 3, timeout: float = 30) -> JobContext:
    return JobContext(42, "test", attempt, max_attempts, timeout)


def run(handler: Any, payload: dict[str, Any], ctx: JobContext | None = None) -> Any:
    result = handler(payload, ctx or context())
    return asyncio.run(result) if asyncio.iscoroutine(result) else result


# -- echo, sleep, fail ---------------------------------------------------------------------------------


def test_echo_returns_its_payload():
    assert run(basic.echo, {"a": [1, {"b": None}]}) == {"a": [1, {"b": None}]}


def test_sleep_sleeps_and_checks_its_input():
    started = time.monotonic()
    assert run(basic.sleep, {"seconds": 0.2}) == {"slept_seconds": 0.2}
    assert time.monotonic() - started >= 0.2
    for bad in (-1, "soon", True, None):
        with pytest.raises(PermanentError, match=r"payload\.seconds"):
            run(basic.sleep, {"seconds": bad})


def test_sleep_returns_at_once_when_already_cancelled():
    ctx = context()
    ctx.cancel()
    started = time.monotonic()
    run(basic.sleep, {"seconds": 10}, ctx)
    assert time.monotonic() - started < 1


def test_fail_fails_its_first_times_attempts_then_succeeds():
    with pytest.raises(basic.DeliberateFailure, match=r"^nope$"):
        run(basic.fail, {"message": "nope", "times": 2}, context(attempt=2))
    assert run(basic.fail, {"message": "nope", "times": 2}, context(attempt=3)) == {"succeeded_on_attempt": 3}
    with pytest.raises(basic.DeliberateFailure, match="failed on purpose"):
        run(basic.fail, {}, context(attempt=50, max_attempts=100))
    with pytest.raises(PermanentError, match=r"^bad$"):
        run(basic.fail, {"message": "bad", "permanent": True})
    with pytest.raises(PermanentError, match=r"payload\.times"):
        run(basic.fail, {"times": "twice"})


# -- send_email ----------------------------------------------------------------------------------------


class Mailbox:
    """An aiosmtpd handler that keeps what it receives; refuse5*/refuse4* recipients are refused."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refuse5"):
            return "550 5.1.1 no such user"
        if address.startswith("refuse4"):
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"app" and auth_data.password == b"secret"
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, authenticator=_authenticate, auth_require_tls=False
    )
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


@pytest.fixture
def smtp_env(monkeypatch, smtp_server):
    port, mailbox = smtp_server
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    monkeypatch.setenv("SMTP_FROM", "jobs@example.test")
    send_email.smtp_settings.cache_clear()
    yield mailbox
    send_email.smtp_settings.cache_clear()


def test_send_email_delivers_the_message(smtp_env):
    result = run(
        send_email.send_email,
        {
            "to": ["ada@example.test", "bob@example.test"],
            "cc": "carol@example.test",
            "bcc": ["dan@example.test"],
            "subject": "Your report is ready",
            "body": "Hello,\nthe report is attached.\n",
            "html": "<p>Hello</p>",
            "reply_to": "support@example.test",
        },
    )
    [(sender, recipients, message)] = smtp_env.messages
    assert sender == "jobs@example.test"
    assert sorted(recipients) == ["ada@example.test", "bob@example.test", "carol@example.test", "dan@example.test"]
    assert message["Subject"] == "Your report is ready"
    assert message["To"] == "ada@example.test, bob@example.test"
    assert message["Cc"] == "carol@example.test"
    assert message["Bcc"] is None  # blind copies stay out of the headers
    assert message["Reply-To"] == "support@example.test"
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == "Hello,\nthe report is attached.\n"
    assert message.get_body(("html",)).get_content().strip() == "<p>Hello</p>"
    assert result["message_id"] == message["Message-ID"]
    assert result["refused"] == {}
    assert sorted(result["recipients"]) == sorted(recipients)


def test_send_email_logs_in_when_a_username_is_set(smtp_env, monkeypatch):
    monkeypatch.setenv("SMTP_USERNAME", "app")
    monkeypatch.setenv("SMTP_PASSWORD", "secret")
    send_email.smtp_settings.cache_clear()
    run(send_email.send_email, {"to": "ada@example.test", "subject": "hi"})
    assert len(smtp_env.messages) == 1
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    send_email.smtp_settings.cache_clear()
    with pytest.raises(PermanentError, match="535"):
        run(send_email.send_email, {"to": "ada@example.test", "subject": "hi"})


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"subject": "no recipient"}, "payload.to is required"),
        ({"to": []}, "payload.to is required"),
        ({"to": "not-an-address"}, "payload.to must be an email address"),
        ({"to": ["ok@example.test", 5]}, "payload.to must be"),
        ({"to": "a@example.test", "subject": "two\r\nBcc: evil@example.test"}, "payload.subject must be one line"),
        ({"to": "a@example.test", "body": 7}, "payload.body must be a string"),
        ({"to": "a@example.test", "cc": "x@y\nz"}, "payload.cc"),
        # Characters Python's email package reads as line breaks (it raised ValueError, which was retried).
        ({"to": "a@example.test", "subject": "one\u2028two"}, "payload.subject must be one line"),
        ({"to": "a@example.test", "subject": "one\x85two"}, "payload.subject must be one line"),
        ({"to": "a@example.test", "subject": "one\x0btwo"}, "payload.subject must be one line"),
        ({"to": "a@example.test", "subject": "one\x00two"}, "payload.subject must be one line"),
        ({"to": "a\u2028b@example.test"}, "payload.to must be an email address"),
        ({"to": "a@example.test", "cc": ["b\x85@example.test"]}, "payload.cc must be an email address"),
        ({"to": "a@example.test", "bcc": "b@exam\x0bple.test"}, "payload.bcc must be an email address"),
        ({"to": "a@example.test", "reply_to": "r@\u2029example.test"}, "payload.reply_to must be an email address"),
    ],
)
def test_send_email_refuses_bad_payloads_without_retrying(smtp_env, payload, field):
    with pytest.raises(PermanentError, match=field.replace(".", r"\.")):
        run(send_email.send_email, payload)
    assert smtp_env.messages == []


def test_send_email_retries_temporary_refusals_and_fails_permanent_ones(smtp_env):
    with pytest.raises(PermanentError, match=r"SMTP server 127\.0\.0\.1:\d+ refused every recipient: .*550"):
        run(send_email.send_email, {"to": "refuse5@example.test"})
    with pytest.raises(RuntimeError, match="450") as retryable:
        run(send_email.send_email, {"to": "refuse4@example.test"})
    assert not isinstance(retryable.value, PermanentError)
    # Some recipients refused, others accepted: sent, and the result says who was refused.
    result = run(send_email.send_email, {"to": ["ada@example.test", "refuse5@example.test"]})
    assert result["recipients"] == ["ada@example.test"]
    assert "550" in result["refused"]["refuse5@example.test"]


def test_send_email_fails_at_once_when_the_server_lacks_an_extension_the_message_needs(monkeypatch):
    # Non-ASCII addresses need SMTPUTF8; a server without it will not grow it: retrying cannot help.
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    send_email.smtp_settings.cache_clear()
    try:
        with pytest.raises(PermanentError, match="SMTPUTF8"):
            run(send_email.send_email, {"to": "zoë@example.test", "subject": "hi"})
        assert mailbox.messages == []
    finally:
        controller.stop()
        send_email.smtp_settings.cache_clear()


def test_send_email_retries_when_the_server_is_unreachable(monkeypatch):
    port = free_port()
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    send_email.smtp_settings.cache_clear()
    try:
        with pytest.raises(OSError) as error:
            run(send_email.send_email, {"to": "ada@example.test"})
        assert not isinstance(error.value, PermanentError)
        # The message (logged, and stored as the job's error_message) names the server it tried.
        assert f"SMTP server 127.0.0.1:{port}: ConnectionRefusedError" in str(error.value)
    finally:
        send_email.smtp_settings.cache_clear()


def test_send_email_jobs_through_an_executor(engine, start_executor, smtp_server):
    port, mailbox = smtp_server
    start_executor("--types", "send_email", env={"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port)})
    [sent] = submit(engine, "send_email", {"to": "ada@example.test", "subject": "Welcome", "body": "Hi Ada"})
    [bad] = submit(engine, "send_email", {"subject": "to nobody"}, max_attempts=5)
    [unsafe] = submit(engine, "send_email", {"to": "ada@example.test", "subject": "a\u2028b"}, max_attempts=5)
    jobs = wait_for_jobs(engine, [sent, bad, unsafe])
    assert jobs[sent].status is JobStatus.COMPLETED
    assert jobs[sent].result is not None and jobs[sent].result["recipients"] == ["ada@example.test"]
    [(_, recipients, message)] = mailbox.messages
    assert recipients == ["ada@example.test"]
    assert message["Subject"] == "Welcome"
    assert message.get_content().strip() == "Hi Ada"
    assert jobs[bad].status is JobStatus.FAILED
    assert jobs[bad].attempts == 1
    assert "payload.to is required" in (jobs[bad].error_message or "")
    assert (jobs[unsafe].status, jobs[unsafe].attempts) == (JobStatus.FAILED, 1)
    assert "payload.subject must be one line" in (jobs[unsafe].error_message or "")


# -- http_request --------------------------------------------------------------------------------------


class Target(BaseHTTPRequestHandler):
    """/ok echoes the request as JSON; /status/N answers N; /slow takes 2 s; /big sends 100 KiB;
    /redirect sends to /ok."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if self.path.startswith("/status/"):
            self._send(int(self.path.rsplit("/", 1)[1]), f"answer {self.path}".encode())
        elif self.path == "/slow":
            time.sleep(2)
            self._send(200, b"late")
        elif self.path == "/big":
            self._send(200, b"x" * (100 * 1024))
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            echo = {"method": self.command, "path": self.path, "body": body, "headers": dict(self.headers)}
            self._send(200, json.dumps(echo).encode(), {"Content-Type": "application/json", "X-Test": "yes"})

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out or stop reading on purpose break the pipe; not worth a traceback


# The local target is internal: the egress policy opens it on purpose (tests/test_egress.py proves the rest).
ALLOW_LOOPBACK = {"EGRESS_ALLOW_NETWORKS": "127.0.0.1/32"}


@pytest.fixture
def http_server() -> Iterator[str]:
    """The target on 127.0.0.1, opened to http_request called in this process."""
    server = QuietServer(("127.0.0.1", 0), Target)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    http_request.configure(EgressPolicy.from_env(ALLOW_LOOPBACK))
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        http_request.configure(EgressPolicy())
        server.shutdown()
        server.server_close()


def test_http_request_get_returns_status_headers_and_body(http_server):
    result = run(http_request.http_request, {"url": f"{http_server}/ok?x=1"})
    assert result["status"] == 200
    assert result["headers"]["X-Test"] == "yes"
    assert result["truncated"] is False
    assert json.loads(result["body"])["path"] == "/ok?x=1"
    assert json.loads(result["body"])["method"] == "GET"


def test_http_request_sends_method_headers_and_json_or_text_bodies(http_server):
    result = run(
        http_request.http_request,
        {"url": f"{http_server}/ok", "method": "post", "headers": {"X-Key": "k1"}, "body": {"order": 7}},
    )
    seen = json.loads(result["body"])
    assert seen["method"] == "POST"
    assert json.loads(seen["body"]) == {"order": 7}
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["X-Key"] == "k1"
    result = run(
        http_request.http_request,
        {"url": f"{http_server}/ok", "method": "PUT", "headers": {"Content-Type": "text/plain"}, "body": "plain"},
    )
    seen = json.loads(result["body"])
    assert (seen["method"], seen["body"], seen["headers"]["Content-Type"]) == ("PUT", "plain", "text/plain")


def test_http_request_follows_redirects_and_truncates_big_bodies(http_server):
    assert json.loads(run(http_request.http_request, {"url": f"{http_server}/redirect"})["body"])["path"] == "/ok"
    result = run(http_request.http_request, {"url": f"{http_server}/big"})
    assert result["truncated"] is True
    assert len(result["body"]) == http_request.RESPONSE_BODY_LIMIT


def test_http_request_4xx_fails_at_once_5xx_and_429_retry(http_server):
    with pytest.raises(PermanentError, match="HTTP 404"):
        run(http_request.http_request, {"url": f"{http_server}/status/404"})
    for status in (500, 503, 429):
        with pytest.raises(http_request.HttpStatusError, match=f"HTTP {status}"):
            run(http_request.http_request, {"url": f"{http_server}/status/{status}"})


def test_http_request_network_errors_and_timeouts_retry(http_server):
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no complete answer within 0\.3 s"):
        run(http_request.http_request, {"url": f"{http_server}/slow", "timeout": 0.3})
    assert time.monotonic() - started < 1.5
    with pytest.raises(ConnectionError):
        run(http_request.http_request, {"url": f"http://127.0.0.1:{free_port()}/"})


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "payload.url is required"),
        ({"url": "ftp://example.test/file"}, "http:// or https://"),
        ({"url": "http:///nohost"}, "with a host"),
        ({"url": "http://127.0.0.1/", "method": "BREW"}, "payload.method"),
        ({"url": "http://127.0.0.1/", "headers": {"X": 1}}, "payload.headers"),
        ({"url": "http://127.0.0.1/", "headers": {"X": "a\r\nY: b"}}, "payload.headers"),
        ({"url": "http://127.0.0.1/", "timeout": "soon"}, "payload.timeout"),
    ],
)
def test_http_request_refuses_bad_payloads(payload, message):
    with pytest.raises(PermanentError, match=message.replace(".", r"\.")):
        run(http_request.http_request, payload)


def test_http_request_jobs_through_an_executor(engine, start_executor, http_server):
    start_executor("--types", "http_request", env={"RETRY_BACKOFF_BASE_SECONDS": "60", **ALLOW_LOOPBACK})
    [ok] = submit(engine, "http_request", {"url": f"{http_server}/ok", "method": "POST", "body": "hi"})
    [missing] = submit(engine, "http_request", {"url": f"{http_server}/status/404"}, max_attempts=3)
    [broken] = submit(engine, "http_request", {"url": f"{http_server}/status/503"}, max_attempts=3)
    jobs = wait_for_jobs(engine, [ok, missing, broken], {*JobStatus} - {JobStatus.READY, JobStatus.PROCESSING})
    assert jobs[ok].status is JobStatus.COMPLETED
    assert jobs[ok].result is not None and jobs[ok].result["status"] == 200
    assert json.loads(jobs[ok].result["body"])["body"] == "hi"
    assert (jobs[missing].status, jobs[missing].attempts) == (JobStatus.FAILED, 1)
    assert "HTTP 404" in (jobs[missing].error_message or "")
    assert (jobs[broken].status, jobs[broken].attempts) == (JobStatus.PENDING, 1)  # to be retried
    assert "HTTP 503" in (jobs[broken].error_message or "")
