"""`make run` as a newcomer uses it: start, submit jobs over REST, see them done, Ctrl-C, nothing left behind.

Runs `python -m scripts.run_local` with DATABASE_URL and SMTP_HOST unset, so it starts its own embedded
PostgreSQL (data in a temporary folder through RUN_LOCAL_DATA_DIR) and its mail sink (messages in a temporary
folder through RUN_LOCAL_MAIL_DIR), and every port is a free one.
"""

from __future__ import annotations

import argparse
import email
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email import policy
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from scripts import run_local
from shared.settings import SettingsError
from tests.support.processes import ROOT, free_port, wait_until

SERVICES = ("api", "scheduler", "executor")
MISSING = [name for name in SERVICES if not (ROOT / "services" / name / "__main__.py").is_file()]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"services not written yet: {', '.join(MISSING)}"),
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the child processes through /proc"),
]

READY_TIMEOUT_SECONDS = 90
JOB_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 60


def readme_quick_start_job() -> dict[str, Any]:
    """The job the README's quick start tells a newcomer to submit after `make run`."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"-d '(\{[^']*\})'", section)
    assert match, "the README's quick start submits no job"
    return dict(json.loads(match.group(1)))


def environment_without(*names: str, **extra: str) -> dict[str, str]:
    """This process's environment less ``names`` (settings of the caller's shell), plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key not in names}
    env.update(extra)
    return env


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def http_json(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def answers_200(url: str) -> bool:
    return http_status(url) == 200


def children_of(pid: int) -> dict[int, str]:
    """pid → command line of every live process whose parent is ``pid``."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    """A zombie counts as gone: it has exited and only waits for its parent to collect the status."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """The embedded PostgreSQL's folder, outside pytest's tmp_path.

    Run as root, pgserver runs PostgreSQL as another user, who must be able to traverse every parent
    folder; pytest resets its own /tmp/pytest-of-<user> to owner-only whenever a session starts.
    """
    folder = Path(tempfile.mkdtemp(prefix="run-local-test-"))
    yield folder / "pg"
    shutil.rmtree(folder, ignore_errors=True)


def test_make_run_serves_jobs_and_keeps_mail_then_ctrl_c_stops_everything(tmp_path: Path, data_dir: Path) -> None:
    grpc_port, http_port, scheduler_port, executor_port = distinct_free_ports(4)
    mail_dir = tmp_path / "mail"
    env = environment_without(
        "DATABASE_URL",
        "METRICS_PORT",
        *run_local.SMTP_SETTINGS_THE_SINK_REPLACES,
        RUN_LOCAL_DATA_DIR=str(data_dir),
        RUN_LOCAL_MAIL_DIR=str(mail_dir),
        GRPC_PORT=str(grpc_port),
        HTTP_PORT=str(http_port),
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
    )
    log_path = tmp_path / "run_local.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scripts.run_local",
            "--scheduler-metrics-port",
            str(scheduler_port),
            "--executor-metrics-port",
            str(executor_port),
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{http_port}"
    children: dict[int, str] = {}
    postmaster_pid: int | None = None

    def output() -> str:
        return log_path.read_text(errors="replace")[-6000:]

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"run_local exited early with {process.returncode}:\n{output()}")
        try:
            return http_json("GET", f"{base}/health") == (200, {"status": "ok"})
        except OSError:
            return False

    try:
        wait_until(healthy, READY_TIMEOUT_SECONDS, interval=0.1, what=f"{base}/health")
        ready_seconds = time.monotonic() - started
        print(f"run_local answered /health after {ready_seconds:.1f}s")

        children = children_of(process.pid)
        modules = sorted(cmd.split(" -m ", 1)[-1].split()[0] for cmd in children.values() if " -m " in cmd)
        assert modules == ["services.api", "services.executor", "services.scheduler"], children
        postmaster_pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        assert alive(postmaster_pid)

        # The scheduler and the executor each got a metrics port of their own.
        for port in (scheduler_port, executor_port):
            url = f"http://127.0.0.1:{port}/metrics"
            wait_until(partial(answers_200, url), 20, what=url)

        def run_job(body: dict[str, Any]) -> dict[str, Any]:
            status, job = http_json("POST", f"{base}/jobs", body)
            assert status in (200, 201), job

            def completed() -> bool:
                nonlocal job
                status, job = http_json("GET", f"{base}/jobs/{job['job_id']}")
                assert status == 200, job
                assert job["status"] not in {"FAILED", "CANCELLED"}, job
                return bool(job["status"] == "COMPLETED")

            wait_until(completed, JOB_TIMEOUT_SECONDS, interval=0.1, what=f"job {job['job_id']} to complete")
            return dict(job)

        assert run_job({"type": "echo", "payload": {"hello": "world"}})["result"] == {"hello": "world"}

        # The README's first example, the seed's send_email, reaches the mail sink; the banner shows it too.
        example = readme_quick_start_job()
        assert example == json.loads(run_local.SEND_EMAIL_EXAMPLE)
        sent = run_job(example)
        [kept] = list(mail_dir.glob("*.eml"))
        message = email.message_from_bytes(kept.read_bytes(), policy=policy.default)
        assert message["Subject"] == example["payload"]["subject"]
        assert message["To"] == example["payload"]["to"]
        assert sent["result"]["message_id"] == message["Message-ID"]
        assert sent["result"]["recipients"] == [example["payload"]["to"]]
        mail_line = f"to {example['payload']['to']} subject {example['payload']['subject']!r}"
        full_output = log_path.read_text(errors="replace")
        assert mail_line in full_output and str(kept) in full_output

        process.send_signal(signal.SIGINT)
        code = process.wait(STOP_TIMEOUT_SECONDS)
        assert code == 0, output()
        left = {pid: cmd for pid, cmd in children.items() if alive(pid)}
        assert not left, f"children still running after run_local exited: {left}"
        assert not alive(postmaster_pid), "the embedded PostgreSQL is still running"
        assert not (data_dir / "postmaster.pid").exists(), "the embedded PostgreSQL did not shut down cleanly"
        assert "all stopped" in output()
    finally:
        # On failure leave nothing running: run_local, its children, the embedded server.
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for pid in [*children, *([postmaster_pid] if postmaster_pid else [])]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        log_file.close()


def test_a_process_that_dies_stops_the_rest_and_fails_the_run(data_dir: Path) -> None:
    """An executor that cannot start (a bad setting) must not leave a half-running stack behind."""
    grpc_port, http_port, scheduler_port, executor_port = distinct_free_ports(4)
    env = environment_without(
        "DATABASE_URL",
        "METRICS_PORT",
        RUN_LOCAL_DATA_DIR=str(data_dir),
        GRPC_PORT=str(grpc_port),
        HTTP_PORT=str(http_port),
        SCHEDULER_METRICS_PORT=str(scheduler_port),
        EXECUTOR_METRICS_PORT=str(executor_port),
        EXECUTOR_CONCURRENCY="lots",
        # A real SMTP server is configured: no mail sink then.
        SMTP_HOST="smtp.example.invalid",
        NO_COLOR="1",
    )
    result = subprocess.run(
        [sys.executable, "-m", "scripts.run_local"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT_SECONDS + READY_TIMEOUT_SECONDS,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "executor exited unexpectedly (exit code 2)" in output
    assert "EXECUTOR_CONCURRENCY" in output
    assert "embedded PostgreSQL stopped" in output
    assert not (data_dir / "postmaster.pid").exists()
    assert "mail sink" not in output


def test_run_local_reads_the_services_own_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The api's ports and the executors' grace come from the services' declarations, read as they read them."""
    monkeypatch.setenv("GRPC_PORT", "50111")
    monkeypatch.setenv("EXECUTOR_SHUTDOWN_GRACE_SECONDS", "7")
    monkeypatch.delenv("RUN_LOCAL_STOP_TIMEOUT", raising=False)
    settings, _ = run_local.parse_args(["--executors", "2", "--executor-metrics-port", "8000"])
    ports = run_local.resolve_ports(settings)
    assert (ports.grpc, ports.http, ports.scheduler_metrics) == (50111, 8000, 8002)
    assert ports.executor_metrics == (8001, 8003)  # 8000 is the api's; 8002 the scheduler's
    assert settings.stop_seconds() == 7 + run_local.STOP_TIMEOUT_MARGIN_SECONDS
    monkeypatch.setenv("HTTP_PORT", "0")
    with pytest.raises(SettingsError, match="HTTP_PORT=0 is below the minimum 1"):
        run_local.resolve_ports(settings)


def test_the_mail_sink_replaces_only_the_executors_smtp_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SMTP_SSL", "true")
    monkeypatch.setenv("SMTP_USERNAME", "app")
    monkeypatch.setenv("SMTP_FROM", "signup@example.com")
    monkeypatch.delenv("SMTP_HOST", raising=False)
    args = argparse.Namespace(no_scheduler=False)
    ports = run_local.Ports(grpc=1, http=2, scheduler_metrics=3, executor_metrics=(4, 5))
    sink = run_local.MailSink(tmp_path / "mail")
    sink.port = 2525
    children = {child.name: child.env for child in run_local.build_children(args, ports, "postgresql://x", sink)}
    for name in ("executor-1", "executor-2"):
        env = children[name]
        assert (env["SMTP_HOST"], env["SMTP_PORT"]) == ("127.0.0.1", "2525")
        assert "SMTP_SSL" not in env and "SMTP_USERNAME" not in env  # the sink has neither TLS nor logins
        assert env["SMTP_FROM"] == "signup@example.com"
    assert children["api"]["SMTP_SSL"] == "true" and "SMTP_HOST" not in children["api"]

    # SMTP_HOST set: the executors get the caller's server untouched.
    monkeypatch.setenv("SMTP_HOST", "smtp.example.com")
    assert run_local.smtp_host_set()
    children = {child.name: child.env for child in run_local.build_children(args, ports, "postgresql://x")}
    assert children["executor-1"]["SMTP_HOST"] == "smtp.example.com"
    assert children["executor-1"]["SMTP_SSL"] == "true"
