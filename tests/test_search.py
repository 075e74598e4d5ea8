"""ListJobs' search filters against a real api: each returns exactly the jobs that match (alone, together,
and page by page), time-filtered lists go newest first by creation time, and bad input names the field;
one tenant's jobs (its fairness key) cancelled and retried in bulk."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import grpc
import pytest
from sqlalchemy import Engine

from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer
from tests.support.job_rows import execute, jobs, submit
from tests.support.rpc_errors import field_violations

NOW = datetime.now(timezone.utc)


def listed(api: ApiServer, page_size: int = 500, **filters: str) -> list[int]:
    """Every job id GET /jobs answers for these filters, following next_page_token."""
    ids: list[int] = []
    token = ""
    while True:
        query = {**filters, "page_size": str(page_size), **({"page_token": token} if token else {})}
        reply = api.get("/jobs?" + urlencode(query))
        assert reply.status == 200, reply.body
        ids += [job["job_id"] for job in reply.body["jobs"]]
        token = reply.body["next_page_token"]
        if not token:
            return ids


@pytest.fixture
def population(api: ApiServer, engine: Engine) -> dict[str, Any]:
    """Jobs with every kind of key, some created days ago (created_at rewritten in the table)."""
    plain = submit(engine, 20, type="search.plain")
    keyed = {i: submit(engine, type="search.keyed", idempotency_key=f"idem-{i}")[0] for i in range(3)}
    unique = submit(engine, type="search.keyed", unique_key="nightly-report")
    # A finished job keeps its unique_key, and search finds it; the key is free for the next job.
    execute(engine, "UPDATE jobs SET status = 'COMPLETED', finished_at = now() WHERE job_id = :i", i=unique[0])
    unique += submit(engine, type="search.keyed", unique_key="nightly-report")
    tenant = submit(engine, 4, type="search.keyed", concurrency_key="tenant-9")
    submit(engine, 3, type="search.keyed", concurrency_key="tenant-10")
    # One fair-share tenant's jobs of two types, and another tenant's (a job without a key stores '').
    acme = submit(engine, 3, type="search.keyed", fairness_key="acme") + submit(engine, 2, fairness_key="acme")
    submit(engine, 2, type="search.keyed", fairness_key="globex")
    scheduled = submit(engine, 5, type="search.keyed", schedule_name="hourly-sync")
    old = submit(engine, 6, type="search.plain")
    # Created 3 days ago, one hour apart, in the opposite order of their ids.
    for n, job_id in enumerate(old):
        execute(
            engine,
            "UPDATE jobs SET created_at = :t WHERE job_id = :i",
            t=NOW - timedelta(days=3) - timedelta(hours=n),
            i=job_id,
        )
    return {
        "plain": plain,
        "keyed": keyed,
        "unique": unique,
        "tenant": tenant,
        "acme": acme,
        "scheduled": scheduled,
        "old": old,
    }


def test_each_search_filter_returns_exactly_the_matching_jobs(
    api: ApiServer, engine: Engine, population: dict[str, Any]
) -> None:
    everything = jobs(engine)
    assert set(listed(api, idempotency_key="idem-1")) == {population["keyed"][1]}
    assert listed(api, idempotency_key="idem-404") == []
    assert listed(api, unique_key="nightly-report") == sorted(population["unique"], reverse=True)
    assert listed(api, concurrency_key="tenant-9") == sorted(population["tenant"], reverse=True)
    assert listed(api, fairness_key="acme") == sorted(population["acme"], reverse=True)
    assert listed(api, fairness_key="acme", page_size=2) == sorted(population["acme"], reverse=True)
    assert listed(api, fairness_key="initech") == []
    assert listed(api, schedule="hourly-sync") == sorted(population["scheduled"], reverse=True)

    # Time bounds: created_after inclusive, created_before exclusive; newest first by created_at.
    cutoff = (NOW - timedelta(days=1)).isoformat()
    old_newest_first = list(population["old"])  # job n was created n hours before job 0
    assert listed(api, created_before=cutoff) == old_newest_first
    recent = [job_id for job_id, row in everything.items() if job_id not in population["old"]]
    assert listed(api, created_after=cutoff) == sorted(recent, reverse=True)
    exactly = everything[population["old"][2]].created_at.isoformat()
    assert listed(api, created_after=exactly, created_before=cutoff) == old_newest_first[:3]
    # Paged two at a time, the time-filtered list is the same list.
    assert listed(api, page_size=2, created_before=cutoff) == old_newest_first
    assert listed(api, page_size=7, created_after=cutoff) == sorted(recent, reverse=True)

    # Filters combine (all must match), with status and type too.
    assert listed(api, type="search.plain", created_before=cutoff) == old_newest_first
    assert listed(api, type="search.keyed", unique_key="nightly-report", status="COMPLETED") == [
        population["unique"][0]
    ]
    assert listed(api, status="READY", unique_key="nightly-report") == sorted(population["unique"][1:], reverse=True)
    assert listed(api, type="search.plain", concurrency_key="tenant-9") == []
    assert listed(api, type="search.keyed", fairness_key="acme") == sorted(population["acme"][:3], reverse=True)
    # An empty key is no filter (as an unset proto3 string), never "the jobs without a key".
    assert listed(api, fairness_key="") == sorted(everything, reverse=True)


def test_grpc_filters_and_a_token_from_another_filter(
    api: ApiServer, stub: JobServiceStub, population: dict[str, Any]
) -> None:
    page = stub.ListJobs(pb.ListJobsRequest(concurrency_key="tenant-9", page_size=3))
    assert [job.job_id for job in page.jobs] == sorted(population["tenant"], reverse=True)[:3]
    rest = stub.ListJobs(pb.ListJobsRequest(concurrency_key="tenant-9", page_size=3, page_token=page.next_page_token))
    assert [job.job_id for job in rest.jobs] == sorted(population["tenant"])[:1] and not rest.next_page_token
    with pytest.raises(grpc.RpcError) as raised:
        stub.ListJobs(pb.ListJobsRequest(concurrency_key="tenant-10", page_token=page.next_page_token))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value) == ["page_token"]

    first = stub.ListJobs(pb.ListJobsRequest(fairness_key="acme", type="search.keyed", page_size=2))
    last = stub.ListJobs(
        pb.ListJobsRequest(fairness_key="acme", type="search.keyed", page_size=2, page_token=first.next_page_token)
    )
    assert [job.job_id for job in (*first.jobs, *last.jobs)] == sorted(population["acme"][:3], reverse=True)
    assert {job.fairness_key for job in first.jobs} == {"acme"} and not last.next_page_token
    with pytest.raises(grpc.RpcError) as raised:
        stub.ListJobs(pb.ListJobsRequest(fairness_key="globex", type="search.keyed", page_token=first.next_page_token))
    assert field_violations(raised.value) == ["page_token"]


def test_cancel_and_retry_one_tenants_jobs_by_fairness_key(
    api: ApiServer, engine: Engine, stub: JobServiceStub
) -> None:
    acme = submit(engine, 3, type="search.fair", fairness_key="acme")
    others = submit(engine, 2, type="search.fair", fairness_key="globex") + submit(engine, 2, type="search.fair")
    counted = api.post("/jobs:cancel", {"filter": {"fairness_key": "acme"}, "validate_only": True})
    assert (counted.status, counted.body) == (200, {"count": 3})
    assert {row.status for row in jobs(engine).values()} == {"READY"}

    assert api.post("/jobs:cancel", {"filter": {"fairness_key": "acme"}}).body == {"count": 3}
    rows = jobs(engine)
    assert {rows[i].status for i in acme} == {"CANCELLED"} and {rows[i].status for i in others} == {"READY"}
    retry = pb.RetryJobsRequest(filter=pb.JobFilter(type="search.fair", fairness_key="acme"))
    assert stub.RetryJobs(retry).count == 3
    assert {row.status for row in jobs(engine).values()} == {"READY"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "BOGUS"}, "status"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2026-13-45T00:00:00Z"}, "created_before"),
        ({"created_after": "2026-05-02T00:00:00Z", "created_before": "2026-05-01T00:00:00Z"}, "created_before"),
        ({"page_size": "-1"}, "page_size"),
        ({"page_size": "501"}, "page_size"),
        ({"page_token": "not-a-token"}, "page_token"),
        ({"fairness_key": "acme\x00"}, "fairness_key"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(api: ApiServer, query: dict[str, str], field: str) -> None:
    reply = api.get("/jobs?" + urlencode(query))
    assert reply.status == 400, reply.body
    assert reply.body["status"] == "INVALID_ARGUMENT"
    assert reply.body["details"][-1]["fieldViolations"][0]["field"] == field, reply.body


def test_grpc_bad_input_names_the_field(api: ApiServer, stub: JobServiceStub) -> None:
    for request, field in (
        (pb.ListJobsRequest(status=99), "status"),  # type: ignore[arg-type]
        (pb.ListJobsRequest(page_size=-1), "page_size"),
        (pb.ListJobsRequest(type="nul\x00"), "type"),
        (pb.ListJobsRequest(fairness_key="nul\x00"), "fairness_key"),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            stub.ListJobs(request)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(raised.value) == [field]
