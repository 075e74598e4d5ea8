"""The web console end to end, in a real headless Chromium (Debian's package, driven by Playwright) against
real api, scheduler and executor processes: submit from the form and watch the job complete, cancel a
running job, act from the table, filter and page the table, the overview, and the token prompt.

Screenshots go to test-artifacts/console/ (git-ignored). With UPDATE_CONSOLE_SCREENSHOT=1 the overview is
also written to docs/console.png, the README's picture (not on every run: it would dirty the tree).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, expect, sync_playwright

from shared.proto.jobs.v1 import job_service_pb2 as pb
from tests.support.api import ApiServer
from tests.support.processes import ROOT, ServiceProcess, free_port, wait_until

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# What works as root in a container without a display; Playwright adds --headless and a fresh profile.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "console"
README_SCREENSHOT = ROOT / "docs" / "console.png"
TOKEN = "console-browser-token-0123456789"
READ_TOKEN = "console-read-only-token-0123456789"
FAST = {
    "EXECUTOR_LEASE_SECONDS": "5",
    "EXECUTOR_HEARTBEAT_INTERVAL_SECONDS": "1",
    "EXECUTOR_POLL_INTERVAL_SECONDS": "0.5",
    "EXECUTOR_CANCEL_CHECK_INTERVAL_SECONDS": "0.2",
    "EXECUTOR_SHUTDOWN_GRACE_SECONDS": "1",
    "SCHEDULER_COMPACT_INTERVAL_SECONDS": "1",
    "METRICS_PORT": "0",
}
# Built-in handlers only: a type without a handler stays READY (what the paging test needs).
PARKED_TYPE = "console.parked"


def _install_chromium() -> str:
    """apt-get install chromium, once per machine (a lock keeps xdist workers from racing)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "not root or no apt-get"
    with open("/tmp/jobs-console-chromium.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if CHROMIUM.exists():
            return ""
        command = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium"
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600)
        return "" if done.returncode == 0 else (done.stdout + done.stderr)[-500:]


@pytest.fixture(scope="session")
def chromium() -> str:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium before the tests")
        problem = _install_chromium()
        if not CHROMIUM.exists():
            pytest.skip(f"{CHROMIUM} is missing and could not be installed ({problem}): apt-get install chromium")
    return str(CHROMIUM)


@pytest.fixture(scope="module")  # not session: its event loop must not outlive this module in the worker
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


class Problems:
    """Everything that went wrong inside the page: uncaught errors, console errors, and API calls that
    failed other than as ``expected`` (pairs of a status and a regular expression for "METHOD /path")."""

    def __init__(self, page: Page, expected: tuple[tuple[int, str], ...] = ()) -> None:
        self.found: list[str] = []
        self.expected = expected
        page.on("pageerror", lambda error: self.found.append(f"uncaught: {error}"))
        page.on("console", self._console)
        page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        # A failed load is reported by _response, with its address.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.found.append(f"console.error: {message.text}")

    def _response(self, response: Response) -> None:
        if response.status < 400:
            return
        call = f"{response.request.method} {urlsplit(response.url).path}"
        if not any(status == response.status and re.fullmatch(pattern, call) for status, pattern in self.expected):
            self.found.append(f"{call} answered {response.status}")

    def assert_none(self) -> None:
        assert not self.found, "\n".join(self.found)


def new_page(browser: Browser) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.set_default_timeout(10_000)
    return page


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


class Stack:
    """api + scheduler + one executor on the test's database (the pattern of tests/test_system.py)."""

    def __init__(self, database_url: str, log_dir: Path) -> None:
        env = {"DATABASE_URL": database_url, **FAST}
        grpc_port, http_port = free_port(), free_port()
        api_env = {**env, "GRPC_PORT": str(grpc_port), "HTTP_PORT": str(http_port)}
        self.processes = [
            ServiceProcess("services.api", api_env, log_dir=log_dir).start(),
            ServiceProcess("services.scheduler", env, log_dir=log_dir).start(),
            ServiceProcess("services.executor", env, ["--concurrency", "4"], log_dir=log_dir).start(),
        ]
        try:
            self.processes[0].wait_for_port(http_port).wait_for_port(grpc_port)
        except BaseException:
            self.close()  # a slow start must not leave the three processes running
            raise
        self.api = ApiServer(self.processes[0], grpc_port, http_port)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@pytest.fixture
def stack(db: str, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(db, tmp_path)
    yield running
    running.close()


def job_id_from(page: Page) -> int:
    expect(page).to_have_url(re.compile(r"#/jobs/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def submit_from_form(page: Page, **fields: str) -> int:
    page.get_by_role("link", name="Submit", exact=True).click()
    for name, value in fields.items():
        page.locator(f"#submit-{name.replace('_', '-')}").fill(value)
    page.locator("#submit-button").click()
    return job_id_from(page)


def test_operator_flow_submit_watch_cancel_filter_page(browser: Browser, stack: Stack) -> None:
    api = stack.api
    page = new_page(browser)
    problems = Problems(page, expected=((400, "POST /jobs"),))  # the out-of-range priority below

    # / redirects to the console, whose overview shows the counts.
    page.goto(api.base_url + "/")
    expect(page).to_have_url(api.base_url + "/ui")
    expect(page.locator(".card[data-status='COMPLETED'] .card-value")).to_have_text("0")

    # Submit an echo job from the form; its page follows it to COMPLETED through the watch stream.
    echo_id = submit_from_form(
        page, type="echo", payload='{"greeting": "hello from the console", "n": 7}', priority="3"
    )
    expect(page.locator("#job-status")).to_have_text("COMPLETED", timeout=20_000)
    expect(page.locator("#job-result")).to_contain_text('"greeting": "hello from the console"')
    expect(page.locator("#job-timeline li[data-step]")).to_have_count(3)  # created, started, finished
    expect(page.locator("dl.facts")).to_contain_text("3 (1 is highest)")
    job: dict[str, Any] = api.get(f"/jobs/{echo_id}").body
    assert job["status"] == "COMPLETED" and job["priority"] == 3
    assert job["result"] == {"greeting": "hello from the console", "n": 7}
    screenshot(page, "job-completed")

    # A bad payload is refused in the form, naming the field; nothing is submitted.
    page.get_by_role("link", name="Submit", exact=True).click()
    page.locator("#submit-type").fill("echo")
    page.locator("#submit-payload").fill("[1, 2]")
    page.locator("#submit-button").click()
    expect(page.locator("#submit-payload-error")).to_contain_text("must be a JSON object")
    # The server's own validation comes back on the field too.
    page.locator("#submit-payload").fill("{}")
    page.locator("#submit-priority").fill("11")
    page.locator("#submit-button").click()
    expect(page.locator("#submit-priority-error")).to_contain_text("between 1 and 10")
    assert len(api.get("/jobs").body["jobs"]) == 1

    # A 30 s sleep job: cancel it from its page while it runs.
    sleep_id = submit_from_form(page, type="sleep", payload='{"seconds": 30}', idempotency_key="console-sleep-1")
    expect(page.locator("#job-status")).to_have_text("PROCESSING", timeout=15_000)
    page.locator("#cancel-job").click()
    expect(page.locator("#job-status")).to_have_text("CANCELLED", timeout=15_000)
    expect(page.locator("#retry-job")).to_be_visible()
    assert api.get(f"/jobs/{sleep_id}").body["status"] == "CANCELLED"
    screenshot(page, "job-cancelled")

    # A job scheduled far ahead (the form takes local time) waits PENDING; cancel it from the table.
    scheduled_id = submit_from_form(page, type="echo", scheduled_at="2099-06-01T12:30:00")
    expect(page.locator("#job-status")).to_have_text("PENDING")
    scheduled = api.get(f"/jobs/{scheduled_id}").body
    assert scheduled["scheduled_at"].startswith("2099-06-01T")
    page.get_by_role("link", name="Jobs", exact=True).click()
    row = page.locator(f"tr.job-row[data-job-id='{scheduled_id}']")
    # The list is fetched after the navigation: under a loaded CI machine that took over the default 10 s.
    expect(row.get_by_role("button", name="Cancel")).to_be_visible(timeout=30_000)
    row.get_by_role("button", name="Cancel").click()
    expect(row).to_have_attribute("data-status", "CANCELLED")

    # Filter the table by status, then by type; the address keeps the filter.
    rows = page.locator("#jobs-table tbody tr.job-row")
    expect(rows).to_have_count(3)
    page.locator("#filter-status").select_option("CANCELLED")
    expect(rows).to_have_count(2)
    assert set(rows.evaluate_all("rows => rows.map(r => r.dataset.status)")) == {"CANCELLED"}
    assert "status=CANCELLED" in page.url
    page.locator("#filter-type").fill("sleep")
    page.locator("#filter-type").press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-job-id", str(sleep_id))
    screenshot(page, "jobs-filtered")
    page.locator("#filter-status").select_option("COMPLETED")
    expect(page.locator("#jobs-table td.empty")).to_have_text("No jobs match these filters.")
    page.get_by_role("button", name="Clear").click()
    expect(rows).to_have_count(3)

    # Paging: 25 jobs no executor takes, 20 per page, newest first.
    batch = api.post("/jobs:batch", {"jobs": [{"type": PARKED_TYPE, "payload": {"i": i}} for i in range(25)]})
    assert batch.status == 200
    page.locator("#filter-type").fill(PARKED_TYPE)
    page.locator("#filter-type").press("Enter")
    page.locator("#page-size").select_option("20")
    expect(rows).to_have_count(20)
    first_page = rows.evaluate_all("rows => rows.map(r => Number(r.dataset.jobId))")
    assert first_page == sorted(first_page, reverse=True)
    page.locator("#page-older").click()
    expect(rows).to_have_count(5)
    expect(page.locator("#page-older")).to_be_disabled()
    second_page = rows.evaluate_all("rows => rows.map(r => Number(r.dataset.jobId))")
    assert max(second_page) < min(first_page)
    page.locator("#page-newer").click()
    expect(rows).to_have_count(20)

    # The overview: counts, a recent failure with its retry, and throughput from successive samples.
    failed = api.post("/jobs", {"type": "fail", "payload": {"message": "upstream said 502"}, "max_attempts": 1})
    wait_until(lambda: api.get(f"/jobs/{failed.body['job_id']}").body["status"] == "FAILED", 15, 0.1, "FAILED")
    for i in range(12):
        api.post("/jobs", {"type": "echo", "payload": {"i": i}})
    page.get_by_role("link", name="Overview").click()
    expect(page.locator("#failures")).to_contain_text("upstream said 502")
    expect(page.locator(".card[data-status='READY'] .card-value")).to_have_text("25")
    expect(page.locator(".card[data-status='COMPLETED'] .card-value")).to_have_text("13", timeout=15_000)
    # The console has been sampling the counts since it opened: rates appear once they span 10 s.
    expect(page.locator("#throughput td[data-rate='COMPLETED']").first).not_to_have_text("—", timeout=15_000)
    expect(page.locator("#types")).to_contain_text(PARKED_TYPE)
    screenshot(page, "overview")
    if os.environ.get("UPDATE_CONSOLE_SCREENSHOT"):
        steady_traffic(api, seconds=50)
        page.screenshot(path=str(README_SCREENSHOT))

    failure_row = page.locator("#failures tbody tr").filter(
        has=page.get_by_role("link", name=f"#{failed.body['job_id']}")
    )
    failure_row.get_by_role("button", name="Retry").click()
    expect(page.locator("#notice")).to_contain_text(f"Job #{failed.body['job_id']} re-queued")
    problems.assert_none()
    page.close()


def test_attempts_view_new_filters_and_bulk_actions(browser: Browser, stack: Stack) -> None:
    api = stack.api
    page = new_page(browser)
    problems = Problems(page)

    # A job that fails twice, then completes: its page lists the three attempts, tracebacks collapsed.
    flaky = api.post("/jobs", {"type": "fail", "payload": {"times": 2, "message": "upstream 502"}, "max_attempts": 3})
    assert flaky.status == 200, flaky.body
    job_id = flaky.body["job_id"]
    wait_until(lambda: api.get(f"/jobs/{job_id}").body["status"] == "COMPLETED", 30, 0.1, "the flaky job")
    page.goto(f"{api.base_url}/ui#/jobs/{job_id}")
    rows = page.locator("#attempts-table tr.attempt-row")
    expect(rows).to_have_count(3)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.outcome)") == ["FAILED", "FAILED", "COMPLETED"]
    executor = api.get(f"/jobs/{job_id}/attempts").body["attempts"][0]["executor_id"]
    expect(rows.first.locator("code.executor")).to_have_text(executor)
    expect(rows.first.locator("td.duration")).to_have_text(re.compile(r"^\d+(\.\d+)? (ms|s)$"))
    expect(rows.first.locator("td.error")).to_have_text("DeliberateFailure: upstream 502")
    traceback = page.locator("tr.traceback-row[data-attempt='1'] details.traceback")
    expect(traceback).not_to_have_attribute("open", "")
    expect(traceback.locator("pre")).to_be_hidden()
    traceback.locator("summary").click()
    expect(traceback.locator("pre")).to_be_visible()
    expect(traceback.locator("pre")).to_contain_text(", in fail")
    expect(page.locator("tr.traceback-row")).to_have_count(2)  # the completed attempt has none
    screenshot(page, "job-attempts")

    # Jobs no executor takes: five for one tenant, two for another.
    tenant = [api.post("/jobs", {"type": PARKED_TYPE, "concurrency_key": "tenant-1"}).body["job_id"] for _ in range(5)]
    others = [api.post("/jobs", {"type": PARKED_TYPE, "concurrency_key": "tenant-2"}).body["job_id"] for _ in range(2)]
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.locator("#bulk-cancel")).to_be_disabled()  # no filter: every job would be selected
    expect(page.locator("#more-filters")).not_to_have_attribute("open", "")
    page.locator("#more-filters summary").click()
    page.locator("#filter-concurrency-key").fill("tenant-1")
    page.locator("#filter-concurrency-key").press("Enter")
    table_rows = page.locator("#jobs-table tbody tr.job-row")
    expect(table_rows).to_have_count(5)
    assert sorted(table_rows.evaluate_all("rows => rows.map(r => Number(r.dataset.jobId))")) == tenant
    assert "concurrency_key=tenant-1" in page.url

    # Cancel all matching: the confirmation shows the count; keeping them changes nothing.
    page.locator("#bulk-cancel").click()
    dialog = page.locator("#bulk-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#bulk-text")).to_have_text("Cancel 5 jobs matching concurrency key tenant-1?")
    page.locator("#bulk-no").click()
    expect(dialog).to_be_hidden()
    assert {api.get(f"/jobs/{i}").body["status"] for i in tenant} == {"READY"}
    page.locator("#bulk-cancel").click()
    page.locator("#bulk-yes").click()
    expect(page.locator("#notice")).to_contain_text("5 jobs cancelled.")
    expect(table_rows.first).to_have_attribute("data-status", "CANCELLED")
    assert {api.get(f"/jobs/{i}").body["status"] for i in tenant} == {"CANCELLED"}
    assert {api.get(f"/jobs/{i}").body["status"] for i in others} == {"READY"}

    # Retry all matching, with the status filter too.
    page.locator("#filter-status").select_option("CANCELLED")
    expect(page.locator("#bulk-cancel")).to_be_disabled()  # cancel does not apply to CANCELLED jobs
    page.locator("#bulk-retry").click()
    expect(page.locator("#bulk-text")).to_have_text(
        "Retry 5 jobs matching status CANCELLED and concurrency key tenant-1?"
    )
    screenshot(page, "bulk-retry-confirmation")
    page.locator("#bulk-yes").click()
    expect(page.locator("#notice")).to_contain_text("5 jobs re-queued.")
    expect(page.locator("#jobs-table td.empty")).to_have_text("No jobs match these filters.")
    assert {api.get(f"/jobs/{i}").body["status"] for i in tenant} == {"READY"}
    assert {api.get(f"/jobs/{i}").body["status"] for i in others} == {"READY"}
    problems.assert_none()
    page.close()


def steady_traffic(api: ApiServer, seconds: float) -> None:
    """A few jobs a second, now and then a failing one: something for the README's picture to show."""
    deadline = time.monotonic() + seconds
    tick = 0
    while time.monotonic() < deadline:
        tick += 1
        jobs: list[dict[str, Any]] = [{"type": "echo", "payload": {"tick": tick, "i": i}} for i in range(2 + tick % 5)]
        if tick % 7 == 0:
            jobs.append({"type": "fail", "payload": {"message": "smtp: 421 try again later"}, "max_attempts": 1})
        api.post("/jobs:batch", {"jobs": jobs})
        time.sleep(1)


def test_docs_page_renders_the_generated_document_and_tries_a_route(browser: Browser, api: ApiServer) -> None:
    api.post("/jobs", {"type": "docs.example", "payload": {"n": 1}})
    page = new_page(browser)
    problems = Problems(page)
    page.goto(api.base_url + "/docs#op-ListJobs")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    operations = page.locator("details.op[data-method]")
    expect(operations).to_have_count(len(pb.DESCRIPTOR.services_by_name["JobService"].methods))
    listing = page.locator("#op-ListJobs")
    expect(listing).to_have_attribute("open", "")
    listing.locator("#ListJobs-type").fill("docs.example")
    listing.get_by_role("button", name="Send").click()
    expect(listing.locator(".response-status")).to_contain_text("200")
    expect(listing.locator(".response-box pre")).to_contain_text('"type": "docs.example"')
    screenshot(page, "docs")

    # The console's throughput arithmetic (stats.js), on samples made up here.
    rates = page.evaluate(
        """async () => {
            const stats = await import("/ui/static/stats.js");
            const t0 = 1_000_000;
            const counts = (completed, failed, cancelled) =>
                ({status_breakdown: {COMPLETED: completed, FAILED: failed, CANCELLED: cancelled, READY: 9}});
            stats.record(counts(100, 10, 0), t0);
            const early = stats.rates(60_000, t0 + 5_000);
            stats.record(counts(130, 12, 1), t0 + 5_000);
            const short = stats.rates(60_000, t0 + 5_000);
            stats.record(counts(150, 11, 1), t0 + 20_000);   // a FAILED job was retried: never negative
            return {early, short, later: stats.rates(60_000, t0 + 20_000),
                    buckets: stats.buckets(30_000, 10_000, t0 + 20_000)};
        }"""
    )
    assert rates["early"] is None and rates["short"] is None  # under 10 s of samples: no rate yet
    assert rates["later"]["seconds"] == 20
    assert rates["later"]["COMPLETED"] == pytest.approx(50 / 20)
    assert rates["later"]["FAILED"] == pytest.approx(1 / 20)
    assert rates["later"]["CANCELLED"] == pytest.approx(1 / 20)
    assert [b["COMPLETED"] for b in rates["buckets"]] == [0, 30, 20]
    problems.assert_none()
    page.close()


@pytest.fixture
def guarded_api(db: str, tmp_path: Path) -> Iterator[ApiServer]:
    grpc_port, http_port = free_port(), free_port()
    env = {"DATABASE_URL": db, "GRPC_PORT": str(grpc_port), "HTTP_PORT": str(http_port), "API_TOKENS": TOKEN}
    with ServiceProcess("services.api", env, log_dir=tmp_path).start() as process:
        process.wait_for_port(http_port).wait_for_port(grpc_port)
        yield ApiServer(process, grpc_port, http_port)


def test_with_tokens_the_console_asks_for_one(browser: Browser, guarded_api: ApiServer) -> None:
    created = guarded_api.post("/jobs", {"type": "guarded"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert created.status == 200
    page = new_page(browser)
    # Until a good token is given, the calls the console makes are refused.
    problems = Problems(page, expected=((401, r"GET /admin/stats|GET /jobs.*|GET /caller"),))
    page.goto(guarded_api.base_url + "/ui")
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("needs an API token")
    page.locator("#token-input").fill("not-the-right-token-000000")
    page.locator("#token-save").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("refused this token")
    page.locator("#token-input").fill(TOKEN)
    page.locator("#token-save").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(".card[data-status='READY'] .card-value")).to_have_text("1")
    expect(page.locator("#token-button")).to_have_text("Token: admin")
    screenshot(page, "token-accepted")
    # Kept for the tab (sessionStorage), so a reload does not ask again.
    page.reload()
    expect(page.locator(".card[data-status='READY'] .card-value")).to_have_text("1")
    expect(dialog).to_be_hidden()
    problems.assert_none()
    page.close()


def test_a_read_token_sees_only_what_its_role_may_do(browser: Browser, db: str, tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = {
        "DATABASE_URL": db,
        "GRPC_PORT": str(grpc_port),
        "HTTP_PORT": str(http_port),
        "API_TOKENS": f"read={READ_TOKEN},{TOKEN}",
    }
    with ServiceProcess("services.api", env, log_dir=tmp_path).start() as process:
        process.wait_for_port(http_port).wait_for_port(grpc_port)
        api = ApiServer(process, grpc_port, http_port)
        admin = {"Authorization": f"Bearer {TOKEN}"}
        ready = api.post("/jobs", {"type": PARKED_TYPE}, headers=admin).body["job_id"]
        cancelled = api.post("/jobs", {"type": PARKED_TYPE}, headers=admin).body["job_id"]
        assert api.post(f"/jobs/{cancelled}:cancel", {}, headers=admin).status == 200

        page = new_page(browser)
        problems = Problems(page, expected=((401, r"GET /admin/stats|GET /jobs.*|GET /caller"),))
        page.goto(api.base_url + "/ui#/jobs")
        page.locator("#token-input").fill(READ_TOKEN)
        page.locator("#token-save").click()
        expect(page.locator("#token-button")).to_have_text("Token: read")
        expect(page.get_by_role("link", name="Submit", exact=True)).to_be_hidden()
        expect(page.locator("tbody tr")).to_have_count(2)
        expect(page.locator("td.row-actions button")).to_have_count(0)
        page.goto(api.base_url + f"/ui#/jobs/{ready}")
        expect(page.locator("h1")).to_contain_text(f"#{ready}")
        expect(page.locator("#cancel-job")).to_have_count(0)
        expect(page.get_by_role("link", name="Submit a copy")).to_have_count(0)
        page.goto(api.base_url + "/ui#/submit")
        expect(page.locator("#submit-not-permitted")).to_contain_text("role read may not submit")
        screenshot(page, "read-only")
        # The operator pages show the types, but no button that changes them.
        page.goto(api.base_url + "/ui#/types")
        expect(page.locator(f"tr.type-row[data-type='{PARKED_TYPE}']")).to_have_count(1)
        expect(page.locator("tr.type-row td.row-actions button")).to_have_count(0)
        expect(page.locator("#pause-type-form")).to_have_count(0)

        # The same pages with an admin token offer every action.
        page.goto(api.base_url + "/ui#/jobs")
        page.locator("#token-button").click()
        page.locator("#token-input").fill(TOKEN)
        page.locator("#token-save").click()
        expect(page.locator("#token-button")).to_have_text("Token: admin")
        expect(page.get_by_role("link", name="Submit", exact=True)).to_be_visible()
        expect(page.locator("td.row-actions button")).to_have_count(2)  # Cancel one, Retry the other
        page.goto(api.base_url + "/ui#/types")
        expect(page.locator("tr.type-row td.row-actions button")).to_have_count(2)  # Pause, Limits…
        problems.assert_none()
        page.close()


def confirm(page: Page, question: str) -> None:
    """Every change in the console asks first: check the question, then confirm."""
    expect(page.locator("#confirm-dialog")).to_contain_text(question)
    page.locator("#confirm-yes").click()
    expect(page.locator("#confirm-dialog")).to_have_count(0)


def test_operator_pages_types_executors_and_schedules(browser: Browser, stack: Stack) -> None:
    api = stack.api
    page = new_page(browser)
    problems = Problems(page, expected=((400, r"PUT /limits/echo"), (400, r"PATCH /schedules/ops-nightly")))
    first = api.post("/jobs", {"type": "echo", "payload": {"n": 1}}).body
    wait_until(lambda: api.get(f"/jobs/{first['job_id']}").body["status"] == "COMPLETED", 20, 0.1, "COMPLETED")

    # Types: pause echo (a change that was not confirmed changes nothing), then resume it.
    page.goto(api.base_url + "/ui#/types")
    row = page.locator("tr.type-row[data-type='echo']")
    expect(row.locator("td[data-count='COMPLETED']")).to_have_text("1")
    row.get_by_role("button", name="Pause").click()
    expect(page.locator("#confirm-dialog")).to_contain_text("Pause job type echo?")
    page.locator("#confirm-no").click()
    assert api.get("/types").body["types"][0]["paused"] is False
    row.get_by_role("button", name="Pause").click()
    confirm(page, "Pause job type echo?")
    expect(row).to_have_attribute("data-paused", "true")
    expect(page.locator("#notice")).to_contain_text("Job type echo paused.")
    held = api.post("/jobs", {"type": "echo", "payload": {"n": 2}}).body
    expect(row.locator("td[data-count='READY']")).to_have_text("1", timeout=15_000)
    assert api.get(f"/jobs/{held['job_id']}").body["status"] == "READY"
    screenshot(page, "types-paused")
    row.get_by_role("button", name="Resume").click()
    confirm(page, "Resume job type echo?")
    expect(row).to_have_attribute("data-paused", "false")
    wait_until(lambda: api.get(f"/jobs/{held['job_id']}").body["status"] == "COMPLETED", 20, 0.1, "the held job")

    # Limits: the API's refusal shows on the field; a good value is saved after confirming.
    row.get_by_role("button", name="Limits…").click()
    page.locator("#limits-dialog-max-running").fill("0")
    page.locator("#limits-dialog-save").click()
    confirm(page, "Change the limits of echo?")
    expect(page.locator("#limits-dialog-max-running-error")).to_contain_text("between 1 and")
    page.locator("#limits-dialog-max-running").fill("3")
    page.locator("#limits-dialog-save").click()
    confirm(page, "Change the limits of echo?")
    expect(page.locator("#limits-dialog")).to_have_count(0)
    expect(row.locator("td.limits")).to_have_text("3 running")
    assert api.get("/limits").body["limits"][0]["max_running"] == 3

    # Executors: the stack's one executor, with its pid.
    page.get_by_role("link", name="Executors").click()
    executor_pid = stack.processes[2].pid
    expect(page.locator(f"tr.executor-row[data-pid='{executor_pid}']")).to_have_count(1)
    expect(page.locator("#executors-summary")).to_contain_text("slots busy")
    screenshot(page, "executors")

    # Schedules: trigger now, pause, and edit (a bad cron is refused on its field).
    body = {"name": "ops-nightly", "cron": "0 3 * * *", "job": {"type": "echo", "payload": {"from": "schedule"}}}
    assert api.post("/schedules", body).status == 200
    page.get_by_role("link", name="Schedules").click()
    schedule = page.locator("tr.schedule-row[data-name='ops-nightly']")
    schedule.get_by_role("button", name="Trigger now").click()
    confirm(page, "Run schedule ops-nightly now?")
    expect(page.locator("#notice")).to_contain_text("Schedule ops-nightly triggered: job #")
    last_job_id = api.get("/schedules/ops-nightly").body["last_job_id"]
    expect(schedule.locator("td.last-run")).to_contain_text(f"#{last_job_id}")
    assert api.get(f"/jobs/{last_job_id}").body["schedule"] == "ops-nightly"
    schedule.get_by_role("button", name="Pause").click()
    confirm(page, "Pause schedule ops-nightly?")
    expect(schedule).to_have_attribute("data-paused", "true")
    schedule.get_by_role("button", name="Edit…").click()
    page.locator("#schedule-dialog-cron").fill("61 * * * *")
    page.locator("#schedule-dialog-save").click()
    confirm(page, "Change cron of ops-nightly?")
    expect(page.locator("#schedule-dialog-cron-error")).not_to_be_empty()
    page.locator("#schedule-dialog-cron").fill("0 4 * * *")
    page.locator("#schedule-dialog-save").click()
    confirm(page, "Change cron of ops-nightly?")
    expect(page.locator("#schedule-dialog")).to_have_count(0)
    expect(schedule.locator("code")).to_have_text("0 4 * * *")
    shown = api.get("/schedules/ops-nightly").body
    assert shown["cron"] == "0 4 * * *" and shown["paused"] is True and shown["job"]["payload"] == {"from": "schedule"}
    screenshot(page, "schedules")
    problems.assert_none()
    page.close()
