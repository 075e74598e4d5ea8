"""jobctl as a person or a script runs it: ``python -m jobclient.cli`` subprocesses against running services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg2
import pytest

import jobclient
from jobclient import JobClient, JobStatus
from tests.support.api import TEST_TOKEN, ApiServer
from tests.support.processes import IDLE, ROOT, free_port, wait_until


class Jobctl:
    """Runs ``python -m jobclient.cli`` with JOBCTL_SERVER pointing at the test's api."""

    def __init__(self, server: str, env: dict[str, str] | None = None) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
        self.env = {**base, "JOBCTL_SERVER": server, **(env or {})}
        self.server = server

    def command(self, args: Sequence[str]) -> list[str]:
        return [sys.executable, "-m", "jobclient.cli", *args]

    def __call__(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
        return subprocess.run(
            self.command(args),
            cwd=ROOT,
            env={**self.env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def json(self, *args: str, stdin: str | None = None) -> Any:
        result = self("--json", *args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        return json.loads(result.stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(args), cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


@pytest.fixture
def jobctl(api: ApiServer, workers: None) -> Jobctl:
    return Jobctl(f"127.0.0.1:{api.grpc_port}")


@pytest.fixture
def client(api: ApiServer) -> Iterator[JobClient]:
    with JobClient(f"127.0.0.1:{api.grpc_port}") as running:
        yield running


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_submit_in_every_form(jobctl: Jobctl, tmp_path: Path) -> None:
    job = jobctl.json("submit", "echo", '{"to": "user@example.com", "n": 3}', "--priority", "2", "--key", "k-1")
    assert job["type"] == "echo" and job["payload"] == {"to": "user@example.com", "n": 3}
    assert (job["priority"], job["idempotency_key"], job["created"]) == (2, "k-1", True)
    again = jobctl("submit", "echo", '{"to": "user@example.com", "n": 3}', "--key", "k-1")
    assert again.returncode == 0
    assert one_line(again.stdout).startswith(f"job {job['job_id']} already existed with idempotency key 'k-1': ")

    human = jobctl("submit", IDLE)
    assert human.returncode == 0 and human.stderr == ""
    assert one_line(human.stdout).startswith("job ") and "submitted: READY" in human.stdout

    from_stdin = jobctl.json("submit", IDLE, "-", stdin='{"from": "stdin"}')
    assert from_stdin["payload"] == {"from": "stdin"}
    payload_file = tmp_path / "payload.json"
    payload_file.write_text('{"from": "file", "list": [1, 2]}')
    from_file = jobctl.json("submit", IDLE, f"@{payload_file}", "--max-attempts", "5", "--timeout-seconds", "60")
    assert from_file["payload"] == {"from": "file", "list": [1, 2]}
    assert (from_file["max_attempts"], from_file["timeout_seconds"]) == (5, 60)

    later = jobctl.json("submit", IDLE, "--delay", "3600")
    assert later["status"] == "PENDING" and later["scheduled_at"].endswith("Z")
    at = jobctl.json("submit", IDLE, "--run-at", "2999-01-02T03:04:05Z")
    assert at["status"] == "PENDING" and at["run_at"].startswith("2999-01-02T03:04:05")


def test_get_list_and_stats(jobctl: Jobctl, client: JobClient) -> None:
    done = client.wait(client.submit("echo", {"n": 1}).job_id, 20)
    idle = [client.submit(IDLE, {"i": i}).job_id for i in range(3)]

    got = jobctl.json("get", str(done.job_id))
    assert got["status"] == "COMPLETED" and got["result"] == {"n": 1} and got["attempts"] == 1
    readable = jobctl("get", str(done.job_id))
    assert readable.returncode == 0
    assert "status           COMPLETED" in readable.stdout and 'result           {"n": 1}' in readable.stdout

    listed = jobctl.json("list")
    assert [job["job_id"] for job in listed] == [*reversed(idle), done.job_id]
    assert [job["job_id"] for job in jobctl.json("list", "--type", IDLE, "--limit", "2")] == idle[:0:-1]
    assert [job["job_id"] for job in jobctl.json("list", "--status", "completed")] == [done.job_id]
    table = jobctl("list", "--status", "READY").stdout.splitlines()
    assert table[0].split() == ["ID", "TYPE", "STATUS", "PRI", "ATTEMPTS", "CREATED", "ERROR"]
    assert len(table) == 4 and all(IDLE in line and "READY" in line for line in table[1:])
    assert jobctl("list", "--status", "FAILED").stdout == "no jobs\n"

    stats = jobctl.json("stats")
    assert stats["status_breakdown"]["READY"] == 3 and stats["status_breakdown"]["COMPLETED"] == 1
    assert stats["type_breakdown"] == {"echo": 1, IDLE: 3}
    text = jobctl("stats").stdout
    assert "STATUS" in text and "total       4" in text and IDLE in text


def test_cancel_and_retry(jobctl: Jobctl, client: JobClient) -> None:
    waiting = client.submit(IDLE).job_id
    cancelled = jobctl("cancel", str(waiting))
    assert cancelled.returncode == 0 and one_line(cancelled.stdout) == f"job {waiting} CANCELLED"
    again = jobctl("cancel", str(waiting))
    assert again.returncode == 1 and again.stdout == ""
    assert one_line(again.stderr) == f"jobctl: error: job {waiting} is CANCELLED and can no longer be cancelled"

    requeued = jobctl.json("retry", str(waiting))
    assert requeued["status"] == "READY" and requeued["attempts"] == 0
    human = jobctl("retry", str(waiting))
    assert human.returncode == 1 and "only FAILED or CANCELLED jobs can be retried" in one_line(human.stderr)

    running = client.submit("sleep", {"seconds": 30}).job_id
    wait_until(lambda: client.get(running).status is JobStatus.PROCESSING, 10, what="the job to start")
    asked = jobctl("cancel", str(running))
    assert asked.returncode == 0
    assert one_line(asked.stdout) == f"job {running} is PROCESSING: cancel requested, its executor will stop it"
    assert client.wait(running, 20).status is JobStatus.CANCELLED


def test_attempts_prints_each_attempt_and_the_tracebacks(jobctl: Jobctl, client: JobClient) -> None:
    job = client.submit("fail", {"times": 1, "message": "first try fails"}, max_attempts=2)
    assert client.wait(job.job_id, 20).status is JobStatus.COMPLETED
    shown = jobctl("attempts", str(job.job_id))
    assert shown.returncode == 0 and shown.stderr == ""
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["ATTEMPT", "OUTCOME", "EXECUTOR", "STARTED", "DURATION", "ERROR"]
    assert lines[1].split()[:2] == ["1", "FAILED"] and lines[2].split()[:2] == ["2", "COMPLETED"]
    assert "attempt 1 (services.executor.handlers.basic.DeliberateFailure):" in shown.stdout
    assert "Traceback (most recent call last):" in shown.stdout and ", in fail" in shown.stdout
    listed = jobctl.json("attempts", str(job.job_id))
    assert [a["outcome"] for a in listed] == ["FAILED", "COMPLETED"] and listed[1]["traceback"] is None
    missing = jobctl("attempts", "987654321")
    assert missing.returncode == 1 and "not found" in one_line(missing.stderr)


def test_cancel_and_retry_by_filter_ask_first_and_show_progress(jobctl: Jobctl, client: JobClient) -> None:
    targets = [client.submit("jobctl.bulk", {"i": i}).job_id for i in range(5)]
    bystander = client.submit(IDLE).job_id

    refused = jobctl("cancel", "--type", "jobctl.bulk", "--status", "ready", stdin="n\n")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "Cancel 5 jobs matching status=READY type=jobctl.bulk? [y/N]" in refused.stderr
    assert "not confirmed: nothing was cancelled (--yes skips the question)" in refused.stderr
    assert {client.get(job_id).status for job_id in targets} == {JobStatus.READY}
    no_answer = jobctl("cancel", "--type", "jobctl.bulk")  # stdin closed: no is the answer
    assert no_answer.returncode == 1

    confirmed = jobctl("cancel", "--type", "jobctl.bulk", "--status", "READY", stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "cancelling 5 jobs matching status=READY type=jobctl.bulk…" in confirmed.stderr  # the progress line
    assert one_line(confirmed.stdout).startswith("cancelled 5 jobs in ")
    assert {client.get(job_id).status for job_id in targets} == {JobStatus.CANCELLED}
    assert client.get(bystander).status is JobStatus.READY
    nothing = jobctl("cancel", "--type", "jobctl.bulk", "--status", "READY")
    assert nothing.returncode == 0
    assert one_line(nothing.stdout) == "no jobs matching status=READY type=jobctl.bulk: nothing to cancel"

    assert jobctl.json("retry", "--type", "jobctl.bulk", "--status", "CANCELLED", "--yes") == {"count": 5}
    assert {client.get(job_id).status for job_id in targets} == {JobStatus.READY}

    for args, message in (
        (("cancel",), "give a job id, or filter options"),
        (("retry", str(targets[0]), "--type", "jobctl.bulk"), "takes a job id or filter options, not both"),
        (("cancel", "--created-after", "last tuesday"), "--created-after 'last tuesday' is not an ISO 8601 time"),
        (("retry", "--status", "READY", "--yes"), "filter.status: retry applies to FAILED, CANCELLED jobs"),
    ):
        bad = jobctl(*args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert message in one_line(bad.stderr), (args, bad.stderr)


def test_list_filters(jobctl: Jobctl, client: JobClient) -> None:
    keyed = client.submit(IDLE, concurrency_key="tenant-3").job_id
    fair = client.submit(IDLE, fairness_key="tenant-4").job_id
    client.submit(IDLE)
    assert [job["job_id"] for job in jobctl.json("list", "--concurrency-key", "tenant-3")] == [keyed]
    assert [job["job_id"] for job in jobctl.json("list", "--fairness-key", "tenant-4")] == [fair]
    created = client.get(keyed).created_at
    assert created is not None
    after = jobctl.json("list", "--created-after", created.isoformat(), "--type", IDLE)
    assert keyed in [job["job_id"] for job in after]
    assert jobctl.json("list", "--created-before", "2000-01-01T00:00:00") == []


def test_watch_prints_changes_as_they_happen_and_exits_0_when_completed(
    jobctl: Jobctl, client: JobClient, db: str
) -> None:
    # Scheduled an hour ahead: the job cannot finish before the test lets it.
    job = client.submit("echo", {"n": 7}, run_at=datetime.now(timezone.utc) + timedelta(hours=1)).job_id
    watcher = jobctl.popen("watch", str(job))
    assert watcher.stdout is not None
    first = watcher.stdout.readline()
    assert first.split()[2:5] == ["job", str(job), "PENDING"], first
    assert watcher.poll() is None  # printed as it happened, while the watch goes on
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute("UPDATE jobs SET run_at = now() WHERE job_id = %s", (job,))  # due now: the scheduler runs it
    conn.close()
    rest, errors = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, errors
    lines = [first, *rest.splitlines()]
    assert all(line.split()[2:4] == ["job", str(job)] for line in lines)
    assert "COMPLETED" in lines[-1] and 'result: {"n": 7}' in lines[-1]

    as_json = jobctl("watch", str(job), "--json")  # a finished job: one update, then exit
    assert as_json.returncode == 0
    assert [json.loads(line)["status"] for line in as_json.stdout.splitlines()] == ["COMPLETED"]


def test_watch_exits_1_when_the_job_fails_or_is_cancelled(jobctl: Jobctl, client: JobClient) -> None:
    failing = client.submit("examples.flaky", {"failures": 5}, max_attempts=2).job_id
    failed = jobctl("--json", "watch", str(failing))
    assert failed.returncode == 1, failed.stderr
    updates = [json.loads(line) for line in failed.stdout.splitlines()]
    assert updates[-1]["status"] == "FAILED" and "simulated outage on attempt 2" in updates[-1]["error_message"]

    waiting = client.submit(IDLE).job_id
    watcher = jobctl.popen("watch", str(waiting))
    assert watcher.stdout is not None
    assert "READY" in watcher.stdout.readline()
    client.cancel(waiting)
    rest, errors = watcher.communicate(timeout=20)
    assert watcher.returncode == 1 and errors == ""
    assert "CANCELLED" in rest and "cancelled by request" in rest

    timed_out = jobctl("watch", str(client.submit(IDLE).job_id), "--timeout", "0.5")
    assert timed_out.returncode == 3 and "did not finish within 0.5s" in one_line(timed_out.stderr)


def test_bad_input_is_one_line_and_exit_2(jobctl: Jobctl) -> None:
    cases = {
        ("submit", "echo", "[1, 2]"): "jobctl: error: the payload must be a JSON object ({...}), got an array",
        ("submit", "echo", "{oops"): "jobctl: error: payload is not valid JSON",
        ("submit", "echo", "@/nonexistent/payload.json"): "jobctl: error: cannot read the payload file",
        ("submit", "echo", "--run-at", "tomorrow"): "jobctl: error: --run-at 'tomorrow' is not an ISO 8601 time",
        ("submit", "echo", "--priority", "11"): "jobctl: error: priority: must be between 1 and 10, got 11",
        ("submit", "Bad Type"): "jobctl: error: type: must be 1-128 characters",
        ("get", "abc"): "jobctl: error: argument job_id: job id must be a whole number",
        ("list", "--status", "SLEEPING"): "jobctl: error: argument --status: unknown status 'SLEEPING'",
        ("frobnicate",): "jobctl: error: argument COMMAND: invalid choice",
        (): "jobctl: error: the following arguments are required: COMMAND",
    }
    for args, expected in cases.items():
        result = jobctl(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert one_line(result.stderr).startswith(expected), (args, result.stderr)
        assert result.stdout == ""
    missing = jobctl("get", "987654")
    assert missing.returncode == 1 and one_line(missing.stderr) == "jobctl: error: job 987654 not found"


def test_unreachable_server_is_one_line_and_exit_2() -> None:
    port = free_port()
    jobctl = Jobctl(f"127.0.0.1:{port}")
    for args in [("stats",), ("get", "1"), ("watch", "1"), ("submit", "echo", "{}")]:
        started = time.monotonic()
        result = jobctl(*args)
        assert result.returncode == 2, result.stderr
        line = one_line(result.stderr)
        assert line.startswith(f"jobctl: cannot reach the job service at 127.0.0.1:{port}: ")
        assert result.stdout == "" and time.monotonic() - started < 10
    # --server beats JOBCTL_SERVER; `python -m jobclient` is jobctl too.
    flag = subprocess.run(
        [sys.executable, "-m", "jobclient", "--server", f"127.0.0.1:{free_port()}", "stats"],
        cwd=ROOT,
        env={**os.environ, "JOBCTL_SERVER": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert flag.returncode == 2 and "127.0.0.1:1:" not in flag.stderr and "cannot reach" in one_line(flag.stderr)


def test_token_and_tls_flags_and_environment(secure_api: tuple[ApiServer, Path], db: str) -> None:
    api, cert = secure_api
    jobctl = Jobctl(f"localhost:{api.grpc_port}")
    anonymous = jobctl("--ca-cert", str(cert), "stats")
    assert anonymous.returncode == 2
    assert one_line(anonymous.stderr).startswith("jobctl: not authenticated: ")
    wrong = jobctl("stats", "--ca-cert", str(cert), "--token", "wrong-token-wrong-token")
    assert wrong.returncode == 2 and "not authenticated" in one_line(wrong.stderr)

    with_flags = jobctl("--tls", "--ca-cert", str(cert), "--token", TEST_TOKEN, "--json", "submit", IDLE, '{"a": 1}')
    assert with_flags.returncode == 0, with_flags.stderr
    job_id = json.loads(with_flags.stdout)["job_id"]
    from_env = jobctl("get", str(job_id), "--json", env={"JOBCTL_TOKEN": TEST_TOKEN, "JOBCTL_CA_CERT": str(cert)})
    assert from_env.returncode == 0, from_env.stderr
    assert json.loads(from_env.stdout)["payload"] == {"a": 1}
    # Plain text to the TLS port: the server cannot be talked to.
    plaintext = jobctl("stats", "--token", TEST_TOKEN)
    assert plaintext.returncode == 2 and "cannot reach the job service" in one_line(plaintext.stderr)
    missing_cert = jobctl("stats", "--ca-cert", "/nonexistent/ca.pem")
    assert missing_cert.returncode == 2 and "is not a readable file" in one_line(missing_cert.stderr)


def test_watch_shows_progress_while_the_job_runs(jobctl: Jobctl, client: JobClient) -> None:
    job = client.submit("sleep", {"seconds": 3})
    result = jobctl("watch", str(job.job_id), "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert "PROCESSING" in result.stdout and "of 3 s" in result.stdout, result.stdout
    assert client.get(job.job_id).progress is not None


def test_schedules_create_list_get_and_delete(jobctl: Jobctl) -> None:
    created = jobctl(
        "schedules",
        "create",
        "nightly-report",
        "--cron",
        "0 3 * * *",
        "--time-zone",
        "Europe/Paris",
        "--type",
        IDLE,
        "--payload",
        '{"day": "today"}',
        "--priority",
        "2",
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("schedule nightly-report created: next run at ")
    listing = jobctl("schedules", "list")
    assert listing.returncode == 0, listing.stderr
    header, row = listing.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "CRON", "TIME"] and row.split()[0] == "nightly-report"
    shown = jobctl.json("schedules", "get", "nightly-report")
    assert shown["cron"] == "0 3 * * *" and shown["time_zone"] == "Europe/Paris"
    # The template as stored: the server's defaults filled in for what was left out.
    assert shown["job"] == {"type": IDLE, "payload": {"day": "today"}, "priority": 2, "max_attempts": 3, "timeout": 300}
    # 03:00 in Paris is 02:00 or 01:00 UTC, depending on the season.
    assert shown["next_run_at"].endswith(("T02:00:00Z", "T01:00:00Z"))

    taken = jobctl("schedules", "create", "nightly-report", "--cron", "0 3 * * *", "--type", IDLE)
    assert taken.returncode == 1 and "nightly-report" in taken.stderr and len(taken.stderr.splitlines()) == 1
    bad = jobctl("schedules", "create", "bad", "--cron", "61 * * * *", "--type", IDLE)
    assert bad.returncode == 2 and "cron" in bad.stderr
    assert jobctl("schedules", "delete", "nightly-report").returncode == 0
    assert jobctl.json("schedules", "list") == []
    gone = jobctl("schedules", "get", "nightly-report")
    assert gone.returncode == 1 and "nightly-report" in gone.stderr


def test_limits_set_list_and_delete(jobctl: Jobctl) -> None:
    set_ = jobctl("limits", "set", "send_email", "--rate", "100/60", "--max-running", "5")
    assert set_.returncode == 0, set_.stderr
    assert set_.stdout.split("\n")[1].split() == ["send_email", "5", "-", "100/60s"]
    assert jobctl.json("limits", "set", "sync_customer", "--max-running-per-key", "1")["max_running_per_key"] == 1
    listed = jobctl.json("limits", "list")
    assert [item["type"] for item in listed] == ["send_email", "sync_customer"]
    assert listed[0]["rate_limit"] == 100 and listed[0]["rate_period_seconds"] == 60
    bad = jobctl("limits", "set", "send_email", "--max-running", "0")
    assert bad.returncode == 2 and "max_running" in bad.stderr
    assert jobctl("limits", "set", "send_email", "--rate", "lots").returncode == 2
    assert jobctl("limits", "delete", "send_email").returncode == 0
    assert [item["type"] for item in jobctl.json("limits", "list")] == ["sync_customer"]
    missing = jobctl("limits", "delete", "send_email")
    assert missing.returncode == 1 and "send_email" in missing.stderr


def test_submit_with_dependencies_and_unique_key(jobctl: Jobctl) -> None:
    first = jobctl.json("submit", IDLE, "--unique-key", "report-1")
    merged = jobctl("submit", IDLE, '{"again": true}', "--unique-key", "report-1")
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout == f"job {first['job_id']} with unique key 'report-1' is still READY: merged into it\n"
    waiting = jobctl.json(
        "submit", "echo", "--depends-on", str(first["job_id"]), "--concurrency-key", "c-1", "--fairness-key", "t-1"
    )
    assert waiting["status"] == "WAITING" and waiting["depends_on"] == [first["job_id"]]
    assert waiting["fairness_key"] == "t-1"
    shown = jobctl("get", str(waiting["job_id"]))
    fields = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert fields["depends_on"] == f"{first['job_id']} (1 pending)" and fields["concurrency_key"] == "c-1"
    assert fields["fairness_key"] == "t-1"
    assert jobctl("cancel", str(first["job_id"])).returncode == 0
    cancelled = jobctl.json("get", str(waiting["job_id"]))
    assert (
        cancelled["status"] == "CANCELLED" and cancelled["error_message"] == f"dependency {first['job_id']} CANCELLED"
    )


def test_types_pause_resume_executors_and_schedule_controls(jobctl: Jobctl, client: JobClient) -> None:
    paused = jobctl("pause", "ops.report")
    assert paused.returncode == 0 and paused.stdout == "job type ops.report paused: no new attempt starts\n"
    client.submit("ops.report", {})
    header, row = jobctl("types").stdout.splitlines()
    assert header.split()[:3] == ["TYPE", "PAUSED", "READY"] and row.split()[:3] == ["ops.report", "paused", "1"]
    assert jobctl.json("resume", "ops.report")["paused"] is False
    assert jobctl.json("types")[0]["paused"] is False
    bad = jobctl("pause", "Not A Type")
    assert bad.returncode == 2 and "type" in one_line(bad.stderr)

    wait_until(lambda: bool(client.list_executors()), 30, what="the workers fixture's executor to register")
    executors = jobctl.json("executors")
    assert any(item["concurrency"] == 8 and "echo" in item["types"] and item["pid"] > 0 for item in executors)
    assert jobctl("executors").stdout.split()[:3] == ["EXECUTOR", "HOST", "PID"]

    created = jobctl("schedules", "create", "ops-nightly", "--cron", "0 3 * * *", "--type", IDLE)
    assert created.returncode == 0, created.stderr
    assert jobctl.json("schedules", "pause", "ops-nightly")["paused"] is True
    assert "paused" in jobctl("schedules", "list").stdout.splitlines()[1].split()
    triggered = jobctl.json("schedules", "trigger", "ops-nightly")
    assert triggered["schedule"] == "ops-nightly" and triggered["type"] == IDLE
    updated = jobctl.json("schedules", "update", "ops-nightly", "--cron", "0 4 * * *", "--time-zone", "Asia/Tokyo")
    assert (updated["cron"], updated["time_zone"], updated["paused"]) == ("0 4 * * *", "Asia/Tokyo", True)
    assert jobctl.json("schedules", "update", "ops-nightly", "--type", IDLE, "--payload", '{"n": 2}')["job"][
        "payload"
    ] == {"n": 2}
    assert jobctl.json("schedules", "resume", "ops-nightly")["paused"] is False
    nothing = jobctl("schedules", "update", "ops-nightly")
    assert nothing.returncode == 2 and "nothing to change" in one_line(nothing.stderr)
    half = jobctl("schedules", "update", "ops-nightly", "--priority", "2")
    assert half.returncode == 2 and "--type" in one_line(half.stderr)
    missing = jobctl("schedules", "trigger", "no-such-schedule")
    assert missing.returncode == 1 and "no-such-schedule" in one_line(missing.stderr)


def test_version_and_tab_completion(tmp_path: Path) -> None:
    """``--version``, and what bash gets back when it asks argcomplete to complete a line (the protocol of
    ``register-python-argcomplete jobctl``: the line in COMP_LINE, the answers written to a file)."""
    jobctl = Jobctl("127.0.0.1:1")
    version = jobctl("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"jobctl {jobclient.__version__}"

    def complete(line: str) -> set[str]:
        answers = tmp_path / "answers"
        env = {
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_IFS": "\n",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": str(answers),
        }
        result = jobctl(env=env)
        assert result.returncode == 0, result.stderr
        return {answer.strip() for answer in answers.read_text().splitlines()}

    assert complete("jobctl li") == {"list", "limits"}
    assert complete("jobctl list --st") == {"--status"}
    assert {"list", "set", "delete"} <= complete("jobctl limits ")
    assert {"PENDING", "READY", "FAILED"} <= complete("jobctl list --status ")
