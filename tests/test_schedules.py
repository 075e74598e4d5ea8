"""Periodic (cron) schedules: the API over gRPC and REST, and real schedulers turning occurrences into jobs.

The scheduler's clock is the database's, so the tests that need occurrences in the past move a
schedule's next_run_at back in the database (as a scheduler outage would leave it); the ones that need
many occurrences use a six-field (seconds) expression that fires every second.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest
from croniter import croniter
from google.protobuf import json_format, struct_pb2
from sqlalchemy import Engine, text

from shared.database import SubmittedOccurrence
from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from shared.schedules import CronExpression
from tests.support.api import ApiServer
from tests.support.gateway import gateway
from tests.support.processes import wait_until
from tests.support.scheduler import Scheduler

pytestmark = pytest.mark.slow


@pytest.fixture
def start_scheduler(tmp_path: Path) -> Iterator[Callable[..., Scheduler]]:
    """Start schedulers (``start_scheduler(database_url, **env)``); all are stopped afterwards."""
    started: list[Scheduler] = []

    def start(database_url: str, **env: str) -> Scheduler:
        scheduler = Scheduler(database_url, tmp_path, [], **env)
        started.append(scheduler)
        scheduler.start()
        return scheduler

    yield start
    for scheduler in started:
        scheduler.stop()


def template(**fields: Any) -> pb.SubmitJobRequest:
    payload = struct_pb2.Struct()
    payload.update(fields.pop("payload", {"report": "daily"}))
    return pb.SubmitJobRequest(type=fields.pop("type", "echo"), payload=payload, **fields)


def create(stub: JobServiceStub, name: str, cron: str, time_zone: str = "", **job: Any) -> pb.Schedule:
    schedule = pb.Schedule(name=name, cron=cron, time_zone=time_zone, job=template(**job))
    reply: pb.Schedule = stub.CreateSchedule(pb.CreateScheduleRequest(schedule=schedule))
    return reply


def error_of(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def scheduled_jobs(engine: Engine, name: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT job_id, scheduled_at, created_at, idempotency_key, schedule_name, type, payload, "
                    "priority, status FROM jobs WHERE schedule_name = :name ORDER BY job_id"
                ),
                {"name": name},
            )
        )


def schedule_row(engine: Engine, name: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM job_schedules WHERE name = :name"), {"name": name}).one()


def set_next_run_at(engine: Engine, name: str, when: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE job_schedules SET next_run_at = :t WHERE name = :name"), {"t": when, "name": name})


# --- The API ------------------------------------------------------------------------------------------


def test_create_get_list_and_delete_over_grpc(stub: JobServiceStub, engine: Engine) -> None:
    before = datetime.now(timezone.utc)
    created = create(
        stub, "nightly-report", "15 3 * * *", "Europe/Paris", priority=2, max_attempts=5, concurrency_key="reports"
    )
    assert created.name == "nightly-report" and created.cron == "15 3 * * *"
    assert created.time_zone == "Europe/Paris"
    assert created.job.type == "echo" and dict(created.job.payload) == {"report": "daily"}
    assert created.job.priority == 2 and created.job.max_attempts == 5 and created.job.concurrency_key == "reports"
    expected = croniter("15 3 * * *", before.astimezone(CronExpression("* * * * *", "Europe/Paris").zone))
    assert created.next_run_at.ToDatetime(tzinfo=timezone.utc) == expected.get_next(datetime)
    assert not created.HasField("last_run_at") and created.last_job_id == 0
    create(stub, "a-first", "@hourly")

    assert stub.GetSchedule(pb.GetScheduleRequest(name="nightly-report")) == created
    listed = stub.ListSchedules(pb.ListSchedulesRequest()).schedules
    assert [s.name for s in listed] == ["a-first", "nightly-report"]

    stub.DeleteSchedule(pb.DeleteScheduleRequest(name="nightly-report"))
    assert error_of(lambda: stub.GetSchedule(pb.GetScheduleRequest(name="nightly-report"))).code() == (
        grpc.StatusCode.NOT_FOUND
    )
    missing = error_of(lambda: stub.DeleteSchedule(pb.DeleteScheduleRequest(name="nightly-report")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND and "nightly-report" in (missing.details() or "")
    assert [s.name for s in stub.ListSchedules(pb.ListSchedulesRequest()).schedules] == ["a-first"]


def test_a_duplicate_name_is_already_exists_and_changes_nothing(stub: JobServiceStub, engine: Engine) -> None:
    create(stub, "dup", "0 * * * *")
    error = error_of(lambda: create(stub, "dup", "*/5 * * * *", type="other"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "dup" in (error.details() or "")
    assert schedule_row(engine, "dup").cron == "0 * * * *"


@pytest.mark.parametrize(
    ("schedule", "field", "fragment"),
    [
        ({"name": "", "cron": "* * * * *"}, "schedule.name", "required"),
        ({"name": "Bad Name", "cron": "* * * * *"}, "schedule.name", "a-z 0-9"),
        ({"cron": ""}, "schedule.cron", "required"),
        ({"cron": "61 * * * *"}, "schedule.cron", "out of range"),
        ({"cron": "* * *"}, "schedule.cron", "3 fields"),
        ({"cron": "0 0 * * * * 2030"}, "schedule.cron", "7 fields"),
        ({"cron": "@reboot"}, "schedule.cron", "1 fields"),
        ({"cron": "0 0 30 2 *"}, "schedule.cron", "never fires"),
        ({"cron": "0 12 31 4,6,9,11 *"}, "schedule.cron", "never fires"),
        ({"time_zone": "Mars/Olympus_Mons"}, "schedule.time_zone", "unknown time zone"),
        ({"time_zone": "../../etc/passwd"}, "schedule.time_zone", "unknown time zone"),
        ({"job": {"type": ""}}, "schedule.job.type", "required"),
        ({"job": {"priority": 11}}, "schedule.job.priority", "between 1 and 10"),
        ({"job": {"max_attempts": 0}}, "schedule.job.max_attempts", "between 1 and 100"),
        ({"job": {"scheduled_at": "2030-01-01T00:00:00Z"}}, "schedule.job.scheduled_at", "not allowed"),
        ({"job": {"idempotency_key": "k"}}, "schedule.job.idempotency_key", "not allowed"),
        ({"job": {"depends_on": [1]}}, "schedule.job.depends_on", "not allowed"),
        ({"job": {"depends_on_index": [0]}}, "schedule.job.depends_on_index", "not allowed"),
    ],
)
def test_bad_input_names_the_field_over_grpc_and_rest(
    api: ApiServer, stub: JobServiceStub, engine: Engine, schedule: dict[str, Any], field: str, fragment: str
) -> None:
    body: dict[str, Any] = {"name": "bad", "cron": "* * * * *", "job": {"type": "echo"}, **schedule}
    body["job"] = {"type": "echo", **schedule.get("job", {})}
    reply = api.request("POST", "/schedules", body)
    assert reply.status == 400, reply.body
    violation = reply.body["details"][-1]["fieldViolations"][0]
    assert violation["field"] == field and fragment in violation["description"], reply.body

    request = pb.CreateScheduleRequest()
    json_format.ParseDict({"schedule": body}, request)
    error = error_of(lambda: stub.CreateSchedule(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(f"{field}: ")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM job_schedules")).scalar_one() == 0


def test_rest_routes_create_get_list_delete(api: ApiServer) -> None:
    body = {
        "name": "hourly-sync",
        "cron": "0 * * * *",
        "time_zone": "America/New_York",
        "job": {"type": "sync", "payload": {"source": "crm", "batch": 100}, "priority": 3},
    }
    created = api.request("POST", "/schedules", body)
    assert created.status == 200, created.body
    assert created.body["name"] == "hourly-sync" and created.body["time_zone"] == "America/New_York"
    assert created.body["job"]["payload"] == {"source": "crm", "batch": 100}
    assert created.body["last_run_at"] is None and created.body["next_run_at"].endswith("Z")

    fetched = api.request("GET", "/schedules/hourly-sync")
    assert fetched.status == 200 and fetched.body == created.body
    listed = api.request("GET", "/schedules")
    assert listed.status == 200 and [s["name"] for s in listed.body["schedules"]] == ["hourly-sync"]
    assert api.request("POST", "/schedules", body).status == 409

    deleted = api.request("DELETE", "/schedules/hourly-sync")
    assert deleted.status == 200 and deleted.body == {}
    gone = api.request("GET", "/schedules/hourly-sync")
    assert gone.status == 404 and gone.body["status"] == "NOT_FOUND"
    assert api.request("DELETE", "/schedules/hourly-sync").status == 404
    assert api.request("GET", "/schedules").body["schedules"] == []


def test_next_run_at_is_computed_in_the_schedules_time_zone(stub: JobServiceStub) -> None:
    # 09:30 on weekdays in New York: 13:30 or 14:30 UTC depending on daylight saving time.
    before = datetime.now(timezone.utc)
    created = create(stub, "market-open", "30 9 * * 1-5", "America/New_York")
    zone = CronExpression("* * * * *", "America/New_York").zone
    expected = croniter("30 9 * * 1-5", before.astimezone(zone)).get_next(datetime)
    next_run_at = created.next_run_at.ToDatetime(tzinfo=timezone.utc)
    assert next_run_at == expected.astimezone(timezone.utc)
    local = next_run_at.astimezone(zone)
    assert (local.hour, local.minute) == (9, 30) and local.weekday() < 5


def test_daylight_saving_time_follows_vixie_cron() -> None:
    # New York leaves DST at 02:00 on 1 November 2026, so 01:00-01:59 happens twice.
    zone_day = datetime(2026, 10, 31, 12, tzinfo=timezone.utc)
    fixed = CronExpression("30 1 * * *", "America/New_York")
    first = fixed.next_after(zone_day)
    assert first == datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc)  # 01:30 EDT, once
    assert fixed.next_after(first) == datetime(2026, 11, 2, 6, 30, tzinfo=timezone.utc)  # 01:30 EST next day
    wildcard = CronExpression("*/30 1 * * *", "America/New_York")
    moments, moment = [], zone_day
    for _ in range(4):
        moment = wildcard.next_after(moment) or moment
        moments.append(moment.strftime("%H:%M"))
    assert moments == ["05:00", "05:30", "06:00", "06:30"]  # both passes through 01:xx
    # Spring forward (8 March 2026, 02:00 -> 03:00): 02:30 does not exist and runs at 03:00.
    spring = CronExpression("30 2 * * *", "America/New_York").next_after(datetime(2026, 3, 7, 12, tzinfo=timezone.utc))
    assert spring == datetime(2026, 3, 8, 7, 0, tzinfo=timezone.utc)


def test_racing_submitters_make_one_job_per_occurrence(stub: JobServiceStub, engine: Engine) -> None:
    # Two schedulers that both believe they lead (the moment a broken leader has not noticed yet) run
    # the same transaction at once: the row lock, the advance and the idempotency key leave one job.
    create(stub, "raced", "*/10 * * * *")
    latest = CronExpression("*/10 * * * *").latest_at_or_before(datetime.now(timezone.utc))
    assert latest is not None
    set_next_run_at(engine, "raced", latest - timedelta(minutes=30))
    store = gateway(engine)
    start = threading.Barrier(8)
    outcomes: list[SubmittedOccurrence | None] = []

    def submit() -> None:
        start.wait()
        outcomes.append(store.submit_due_occurrence())

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    submitted = [outcome for outcome in outcomes if outcome is not None]
    assert len(outcomes) == 8 and len(submitted) == 1, outcomes
    assert submitted[0].occurrence == latest and submitted[0].skipped_from == latest - timedelta(minutes=30)
    assert [job.scheduled_at for job in scheduled_jobs(engine, "raced")] == [latest]


# --- The scheduler ------------------------------------------------------------------------------------


def test_missed_occurrences_fire_once_for_the_latest_and_the_schedule_moves_on(
    db: str, stub: JobServiceStub, engine: Engine, start_scheduler: Callable[..., Scheduler]
) -> None:
    create(stub, "daily", "0 3 * * *", payload={"n": 1})
    expression = CronExpression("0 3 * * *")
    now = datetime.now(timezone.utc)
    latest = expression.latest_at_or_before(now)
    assert latest is not None
    # As if no scheduler had run for five days: five occurrences are due.
    set_next_run_at(engine, "daily", latest - timedelta(days=4))

    scheduler = start_scheduler(db).wait_until_leader(30)
    try:
        wait_until(lambda: len(scheduled_jobs(engine, "daily")) >= 1, 30, what="the missed occurrence's job")
        scheduler.wait_for_log("schedule daily missed its occurrences", 30)
        jobs = scheduled_jobs(engine, "daily")
        assert len(jobs) == 1, jobs
    except AssertionError:
        print(scheduler.output()[-5000:])  # shown with the failure
        raise
    (job,) = jobs
    assert job.scheduled_at == latest, "the most recent missed occurrence, not the oldest"
    assert job.idempotency_key == f"schedule:1:{int(latest.timestamp())}"
    row = schedule_row(engine, "daily")
    assert row.last_run_at == latest and row.last_job_id == job.job_id
    assert row.next_run_at > datetime.now(timezone.utc)
    assert row.next_run_at == expression.next_after(latest)
    shown = stub.GetJob(pb.GetJobRequest(job_id=job.job_id))
    assert shown.schedule == "daily" and dict(shown.payload) == {"n": 1}
    assert shown.scheduled_at.ToDatetime(tzinfo=timezone.utc) == latest
    assert scheduler.metric("schedule_occurrences_submitted_total", schedule="daily") == 1


def test_every_occurrence_once_with_three_schedulers_and_the_leader_killed(
    db: str, stub: JobServiceStub, engine: Engine, start_scheduler: Callable[..., Scheduler]
) -> None:
    fast = {"SCHEDULER_LEADER_RETRY_SECONDS": "0.2"}
    schedulers = [start_scheduler(db, **fast) for _ in range(3)]
    wait_until(lambda: sum(s.is_leader() for s in schedulers) == 1, 15, what="one leader")
    create(stub, "every-second", "* * * * * *", type="tick", priority=4)

    wait_until(lambda: len(scheduled_jobs(engine, "every-second")) >= 4, 20, what="four occurrences")
    (leader,) = [s for s in schedulers if s.is_leader()]
    assert leader.process is not None
    leader.process.send_signal(signal.SIGKILL)
    leader.process.wait(10)
    killed_at = len(scheduled_jobs(engine, "every-second"))
    standbys = [s for s in schedulers if s is not leader]
    wait_until(lambda: any(s.is_leader() for s in standbys), 20, what="a standby to take over")
    wait_until(
        lambda: len(scheduled_jobs(engine, "every-second")) >= killed_at + 4, 20, what="occurrences after take-over"
    )

    stub.DeleteSchedule(pb.DeleteScheduleRequest(name="every-second"))
    after_delete = len(scheduled_jobs(engine, "every-second"))
    time.sleep(2.5)  # two and a half more occurrences' worth of time: none may come
    jobs = scheduled_jobs(engine, "every-second")
    assert len(jobs) == after_delete, "a deleted schedule submits nothing more"

    occurrences = [job.scheduled_at for job in jobs]
    assert len(set(occurrences)) == len(occurrences), "no occurrence submitted twice"
    assert occurrences == sorted(occurrences)
    for job in jobs:
        # The missed-run policy, exactly: each job is for the most recent occurrence at or before the
        # moment its transaction started (created_at), so a skipped second is one that was missed.
        assert job.scheduled_at == job.created_at.replace(microsecond=0), job
        assert job.idempotency_key == f"schedule:1:{int(job.scheduled_at.timestamp())}"
        assert (job.type, job.priority, job.schedule_name) == ("tick", 4, "every-second")
    gaps = [(a, b) for a, b in itertools.pairwise(occurrences) if (b - a).total_seconds() > 1]
    lateness_ms = sorted((job.created_at - job.scheduled_at).total_seconds() * 1000 for job in jobs)
    print(
        f"{len(jobs)} occurrences, {killed_at} before the kill; skipped (missed) spans: {gaps}; "
        f"lateness median {lateness_ms[len(lateness_ms) // 2]:.1f} ms, max {lateness_ms[-1]:.1f} ms"
    )
    assert any(s.metric("schedule_occurrences_submitted_total", schedule="every-second") for s in standbys)


def test_a_schedule_that_cannot_be_submitted_is_set_aside_and_does_not_block_the_others(
    db: str, stub: JobServiceStub, engine: Engine, start_scheduler: Callable[..., Scheduler]
) -> None:
    create(stub, "broken", "* * * * *")
    create(stub, "healthy", "* * * * *")
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    # As if a stored template no longer read (an upgrade changed the rules): the broken one is due first.
    with engine.begin() as conn:
        conn.execute(text("UPDATE job_schedules SET job_template = '{\"type\": 7}' WHERE name = 'broken'"))
    set_next_run_at(engine, "broken", past - timedelta(minutes=1))
    set_next_run_at(engine, "healthy", past)

    scheduler = start_scheduler(db).wait_until_leader(30)
    wait_until(lambda: len(scheduled_jobs(engine, "healthy")) >= 1, 30, what="the healthy schedule's job")
    scheduler.wait_for_log("schedule broken: could not submit its occurrence", 30)
    assert scheduled_jobs(engine, "broken") == []
    # Set aside for a minute (retried then, and logged again), not retried ahead of the others.
    row = schedule_row(engine, "broken")
    assert timedelta(seconds=50) < row.next_run_at - datetime.now(timezone.utc) <= timedelta(minutes=1)
    assert row.last_job_id is None
    assert scheduler.is_leader() and scheduler.process is not None and scheduler.process.poll() is None


# --- Operator controls: trigger, pause, resume, update, paging ---------------------------------------


def test_trigger_submits_one_job_and_a_paused_schedule_submits_none_until_resumed(
    db: str, api: ApiServer, engine: Engine, start_scheduler: Callable[..., Scheduler]
) -> None:
    body = {"name": "every-second", "cron": "* * * * * *", "job": {"type": "echo", "payload": {"n": 1}}}
    assert api.request("POST", "/schedules", body).status == 200
    paused = api.post("/schedules/every-second:pause")
    assert paused.status == 200 and paused.body["paused"] is True and paused.body["paused_at"]
    scheduler = start_scheduler(db).wait_until_leader(30)

    triggered = api.post("/schedules/every-second:trigger")
    assert triggered.status == 200, triggered.body
    job = triggered.body
    assert job["schedule"] == "every-second" and job["payload"] == {"n": 1} and job["status"] == "READY"
    assert [row.job_id for row in scheduled_jobs(engine, "every-second")] == [job["job_id"]]
    shown = api.get("/schedules/every-second").body
    assert shown["last_job_id"] == job["job_id"] and shown["next_run_at"] == paused.body["next_run_at"]

    time.sleep(5)  # five occurrences come due while paused
    assert [row.job_id for row in scheduled_jobs(engine, "every-second")] == [job["job_id"]]

    resumed_at = datetime.now(timezone.utc)
    resumed = api.post("/schedules/every-second:resume")
    assert resumed.status == 200 and resumed.body["paused"] is False and resumed.body["paused_at"] is None
    # The missed-run rule: the latest missed occurrence fires once; then every second again.
    wait_until(lambda: len(scheduled_jobs(engine, "every-second")) >= 3, 30, what="occurrences after the resume")
    scheduler.wait_for_log("schedule every-second missed its occurrences", 30)
    occurrences = scheduled_jobs(engine, "every-second")[1:]
    assert all(row.scheduled_at >= resumed_at - timedelta(seconds=1) for row in occurrences), occurrences
    assert len({row.scheduled_at for row in occurrences}) == len(occurrences)

    for action in ("pause", "resume", "trigger"):
        missing = api.post(f"/schedules/no-such-schedule:{action}")
        assert missing.status == 404 and missing.body["status"] == "NOT_FOUND"


def test_update_changes_the_cron_and_the_next_run_or_only_the_template(
    db: str, api: ApiServer, engine: Engine, start_scheduler: Callable[..., Scheduler]
) -> None:
    body = {"name": "yearly", "cron": "0 0 1 1 *", "job": {"type": "echo", "payload": {"v": 1}, "priority": 3}}
    created = api.request("POST", "/schedules", body).body

    # Only the template: the next run stays.
    reply = api.request(
        "PATCH", "/schedules/yearly", {"schedule": {"job": {"payload": {"v": 2}}}, "update_mask": "job.payload"}
    )
    assert reply.status == 200, reply.body
    assert reply.body["job"]["payload"] == {"v": 2} and reply.body["job"]["priority"] == 3
    assert reply.body["next_run_at"] == created["next_run_at"] and reply.body["cron"] == "0 0 1 1 *"

    # The cron: the next run moves to the new expression's first occurrence from now.
    reply = api.request(
        "PATCH", "/schedules/yearly", {"schedule": {"cron": "*/2 * * * * *", "time_zone": "Asia/Tokyo"}}
    )
    assert reply.status == 200, reply.body
    assert reply.body["cron"] == "*/2 * * * * *" and reply.body["time_zone"] == "Asia/Tokyo"
    next_run = datetime.fromisoformat(reply.body["next_run_at"].replace("Z", "+00:00"))
    assert next_run < datetime.now(timezone.utc) + timedelta(seconds=3)
    start_scheduler(db).wait_until_leader(30)
    wait_until(lambda: len(scheduled_jobs(engine, "yearly")) >= 1, 30, what="the updated schedule's first job")
    assert scheduled_jobs(engine, "yearly")[0].payload == {"v": 2}

    bad_mask = api.request("PATCH", "/schedules/yearly", {"schedule": {"name": "other"}, "update_mask": "name"})
    assert bad_mask.status == 400 and bad_mask.body["details"][-1]["fieldViolations"][0]["field"] == "update_mask"
    bad_cron = api.request("PATCH", "/schedules/yearly", {"schedule": {"cron": "61 * * * *"}, "update_mask": "cron"})
    assert bad_cron.status == 400 and bad_cron.body["details"][-1]["fieldViolations"][0]["field"] == "schedule.cron"
    assert api.get("/schedules/yearly").body["cron"] == "*/2 * * * * *"  # bad input changes nothing
    assert api.request("PATCH", "/schedules/nothing-here", {"schedule": {"cron": "@daily"}}).status == 404


def test_list_schedules_pages_like_list_jobs(stub: JobServiceStub) -> None:
    for name in ("p-a", "p-b", "p-c"):
        create(stub, name, "@daily")
    first = stub.ListSchedules(pb.ListSchedulesRequest(page_size=2))
    assert [s.name for s in first.schedules] == ["p-a", "p-b"] and first.next_page_token
    second = stub.ListSchedules(pb.ListSchedulesRequest(page_size=2, page_token=first.next_page_token))
    assert [s.name for s in second.schedules] == ["p-c"] and second.next_page_token == ""
    bad = error_of(lambda: stub.ListSchedules(pb.ListSchedulesRequest(page_size=501)))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
