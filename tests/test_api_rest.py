"""The REST shim answers the original service's curl examples, with the shapes its users rely on."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from tests.support.api import ApiServer

SEED_JOB = {
    "type": "send_email",
    "payload": {"to": "user@example.com", "subject": "Welcome!", "body": "Thanks for signing up"},
    "idempotency_key": "signup-email-user123",
    "priority": 5,
    "scheduled_at": "2099-02-01T15:00:00",
}

JOB_FIELDS = {
    "job_id",
    "type",
    "idempotency_key",
    "status",
    "priority",
    "payload",
    "created_at",
    "updated_at",
    "scheduled_at",
    "started_at",
    "finished_at",
    "error_message",
    "attempts",
    "result",
    "max_attempts",
    "timeout_seconds",
    "run_at",
    "cancel_requested",
}


def row_count(db: str) -> int:
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs")
        (count,) = cur.fetchone() or (0,)
        return int(count)


def test_create_job_answers_like_the_seed(api: ApiServer) -> None:
    reply = api.post("/jobs", SEED_JOB)
    assert reply.status == 200
    job = reply.body
    assert set(job) >= JOB_FIELDS
    assert isinstance(job["job_id"], int)
    assert job["type"] == "send_email"
    assert job["idempotency_key"] == "signup-email-user123"
    assert job["status"] == "PENDING"  # scheduled in the future
    assert job["priority"] == 5
    assert job["payload"] == SEED_JOB["payload"]
    assert job["scheduled_at"] == "2099-02-01T15:00:00Z"  # a time without offset is read as UTC
    assert job["started_at"] is None and job["finished_at"] is None
    assert job["error_message"] is None and job["result"] is None
    assert job["attempts"] == 0


def test_job_without_schedule_is_ready_and_defaults_apply(api: ApiServer) -> None:
    job = api.post("/jobs", {"type": "process_data"}).body
    assert job["status"] == "READY"
    assert job["priority"] == 5
    assert job["payload"] == {}
    assert job["max_attempts"] == 3
    assert job["idempotency_key"] is None


def test_integers_in_payload_come_back_as_integers(api: ApiServer) -> None:
    payload = {"count": 3, "ratio": 0.5, "nested": {"ids": [1, 2, 3]}, "flag": True, "none": None}
    job = api.post("/jobs", {"type": "echo", "payload": payload}).body
    assert api.get(f"/jobs/{job['job_id']}").body["payload"] == payload


def test_get_list_health_and_stats(api: ApiServer) -> None:
    created = api.post("/jobs", SEED_JOB).body
    ready = api.post("/jobs", {"type": "generate_report", "priority": 1}).body

    got = api.get(f"/jobs/{created['job_id']}")
    assert got.status == 200 and got.body == created

    everything = api.get("/jobs").body
    assert [j["job_id"] for j in everything["jobs"]] == [ready["job_id"], created["job_id"]]  # newest first
    pending = api.get("/jobs?status=PENDING").body
    assert [j["job_id"] for j in pending["jobs"]] == [created["job_id"]]
    by_type = api.get("/jobs?type=generate_report").body
    assert [j["job_id"] for j in by_type["jobs"]] == [ready["job_id"]]

    assert api.get("/health").body == {"status": "ok"}

    stats = api.get("/admin/stats").body
    assert stats["status_breakdown"]["PENDING"] == 1
    assert stats["status_breakdown"]["READY"] == 1
    assert stats["status_breakdown"]["COMPLETED"] == 0
    assert stats["type_breakdown"] == {"send_email": 1, "generate_report": 1}
    assert stats["avg_attempts_for_failed_jobs"] == 0
    assert stats["recent_failures"] == []


def test_metrics_endpoint_counts_created_jobs(api: ApiServer) -> None:
    api.post("/jobs", {"type": "metrics_probe"})
    text = api.get("/metrics").body
    assert 'jobs_created_total{job_type="metrics_probe"}' in text
    assert "rpc_requests_total" in text


def test_idempotent_replay_returns_the_same_job(api: ApiServer, db: str) -> None:
    first = api.post("/jobs", SEED_JOB).body
    again = api.post("/jobs", SEED_JOB).body
    assert again == first
    assert row_count(db) == 1


def test_same_key_different_payload_is_a_conflict(api: ApiServer, db: str) -> None:
    api.post("/jobs", SEED_JOB)
    reply = api.post("/jobs", {**SEED_JOB, "payload": {"to": "someone-else@example.com"}})
    assert reply.status == 409
    assert reply.body["status"] == "ALREADY_EXISTS"
    assert "signup-email-user123" in reply.body["message"]
    assert row_count(db) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "type"),
        ({"type": ""}, "type"),
        ({"type": "Send Email"}, "type"),
        ({"type": "x" * 129}, "type"),
        ({"type": "ok", "priority": 0}, "priority"),
        ({"type": "ok", "priority": 11}, "priority"),
        ({"type": "ok", "priority": "high"}, "priority"),
        ({"type": "ok", "priority": 2.5}, "priority"),
        ({"type": "ok", "max_attempts": 0}, "max_attempts"),
        ({"type": "ok", "max_attempts": 101}, "max_attempts"),
        ({"type": "ok", "payload": [1, 2]}, "payload"),
        ({"type": "ok", "payload": "text"}, "payload"),
        ({"type": "ok", "scheduled_at": "next tuesday"}, "scheduled_at"),
        ({"type": "ok", "idempotency_key": ""}, "idempotency_key"),
        ({"type": "ok", "unknown_field": 1}, "unknown_field"),
        ({"type": 7}, "type"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_stores_nothing(
    api: ApiServer, db: str, body: dict[str, object], field: str
) -> None:
    reply = api.post("/jobs", body)
    assert reply.status == 400, reply.body
    assert reply.body["status"] == "INVALID_ARGUMENT"
    assert reply.body["code"] == 400
    assert field in reply.body["message"]
    violations = [d for d in reply.body["details"] if d["@type"].endswith("BadRequest")]
    assert violations and violations[0]["fieldViolations"][0]["field"] == field
    assert row_count(db) == 0


def test_payload_over_the_limit_is_refused(api: ApiServer, db: str) -> None:
    reply = api.post("/jobs", {"type": "big", "payload": {"blob": "x" * (1024 * 1024 + 1)}})
    assert reply.status == 400
    assert "payload" in reply.body["message"]
    assert row_count(db) == 0


@pytest.mark.parametrize("raw", [b"{bad json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_malformed_body_is_400(api: ApiServer, db: str, raw: bytes) -> None:
    reply = api.request("POST", "/jobs", raw=raw)
    assert reply.status == 400
    assert reply.body["status"] == "INVALID_ARGUMENT"
    assert row_count(db) == 0


def test_unknown_job_is_404_and_bad_id_is_400(api: ApiServer) -> None:
    missing = api.get("/jobs/987654")
    assert missing.status == 404
    assert missing.body["status"] == "NOT_FOUND"
    assert "987654" in missing.body["message"]
    assert api.get("/jobs/abc").status == 400
    assert api.get("/no/such/route").status == 404


def test_list_rejects_unknown_filters_and_bad_status(api: ApiServer) -> None:
    assert api.get("/jobs?colour=red").status == 400
    bad_status = api.get("/jobs?status=SLEEPING")
    assert bad_status.status == 400 and "status" in bad_status.body["message"]
    assert api.get("/jobs?page_size=501").status == 400
    assert api.get("/jobs?page_token=garbage!").status == 400


def test_pagination_walks_every_job_once(api: ApiServer) -> None:
    ids = [api.post("/jobs", {"type": "page"}).body["job_id"] for _ in range(7)]
    seen: list[int] = []
    token = ""
    while True:
        page = api.get(f"/jobs?page_size=3&page_token={token}").body
        seen += [j["job_id"] for j in page["jobs"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == sorted(ids, reverse=True)
    # A token only works with the filter that made it.
    first = api.get("/jobs?page_size=3").body
    assert api.get(f"/jobs?page_size=3&status=READY&page_token={first['next_page_token']}").status == 400


def test_batch_submit_cancel_and_retry_routes(api: ApiServer) -> None:
    batch = api.post("/jobs:batch", {"jobs": [{"type": "a"}, {"type": "b", "priority": 1}]})
    assert batch.status == 200
    results = batch.body["results"]
    assert [r["job"]["type"] for r in results] == ["a", "b"]
    assert all(r["created"] for r in results)

    job_id = results[0]["job"]["job_id"]
    cancelled = api.post(f"/jobs/{job_id}:cancel")
    assert cancelled.status == 200 and cancelled.body["status"] == "CANCELLED"
    again = api.post(f"/jobs/{job_id}:cancel")
    assert again.status == 409 and again.body["status"] == "FAILED_PRECONDITION"

    retried = api.post(f"/jobs/{job_id}:retry")
    assert retried.status == 200
    assert retried.body["status"] == "READY" and retried.body["attempts"] == 0
    assert api.post(f"/jobs/{job_id}:retry").status == 409


def test_batch_validation_is_all_or_nothing(api: ApiServer, db: str) -> None:
    reply = api.post("/jobs:batch", {"jobs": [{"type": "fine"}, {"type": "fine", "priority": 99}]})
    assert reply.status == 400
    assert "jobs[1].priority" in reply.body["message"]
    assert row_count(db) == 0
    too_many = api.post("/jobs:batch", {"jobs": [{"type": "x"}] * 1001})
    assert too_many.status == 400 and "1000" in too_many.body["message"]
    assert api.post("/jobs:batch", {"jobs": []}).status == 400
    assert row_count(db) == 0


def test_watch_streams_until_the_job_is_finished(api: ApiServer) -> None:
    job = api.post("/jobs", {"type": "watched"}).body
    api.post(f"/jobs/{job['job_id']}:cancel")
    reply = api.get(f"/jobs/{job['job_id']}:watch")
    assert reply.status == 200
    assert [update["status"] for update in reply.body] == ["CANCELLED"]


def test_scheduled_at_with_offset_is_kept_exactly(api: ApiServer) -> None:
    when = (datetime.now(timezone.utc) + timedelta(days=1)).replace(microsecond=0)
    local = when.astimezone(timezone(timedelta(hours=2))).isoformat()
    job = api.post("/jobs", {"type": "later", "scheduled_at": local}).body
    assert job["status"] == "PENDING"
    assert datetime.fromisoformat(job["scheduled_at"].replace("Z", "+00:00")) == when
