"""CancelJobs and RetryJobs (POST /jobs:cancel, /jobs:retry) against a real api: they change exactly the
jobs their filter selects in the statuses they apply to, over several transactions of a page each, are
safe to repeat, count without changing with validate_only, and refuse an empty filter."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import Engine

from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer
from tests.support.job_rows import execute, jobs, make_processing, submit
from tests.support.rpc_errors import field_violations


def statuses(engine: Engine) -> Counter[tuple[str, str]]:
    """How many jobs per (type, status)."""
    return Counter((row.type, row.status) for row in jobs(engine).values())


def test_bulk_cancel_and_retry_of_300_jobs_by_type_and_status_change_exactly_those(
    api: ApiServer, engine: Engine
) -> None:
    targets = set(submit(engine, 300, type="bulk.a"))
    submit(engine, 40, type="bulk.a", scheduled_in=timedelta(hours=1))  # PENDING: not selected
    submit(engine, 60, type="bulk.b")  # another type: not selected
    before = {job_id: row for job_id, row in jobs(engine).items() if job_id not in targets}

    cancel = api.post("/jobs:cancel", {"filter": {"type": "bulk.a", "status": "READY"}})
    assert (cancel.status, cancel.body) == (200, {"count": 300})
    after = jobs(engine)
    assert {job_id for job_id, row in after.items() if row.status == "CANCELLED"} == targets
    assert all(after[job_id].error_message == "cancelled by request" for job_id in targets)
    assert {job_id: after[job_id] for job_id in before} == before, "a job outside the filter changed"

    # Safe to repeat: nothing is left to cancel.
    assert api.post("/jobs:cancel", {"filter": {"type": "bulk.a", "status": "READY"}}).body == {"count": 0}

    # validate_only counts and changes nothing.
    counted = api.post("/jobs:retry", {"filter": {"type": "bulk.a", "status": "CANCELLED"}, "validate_only": True})
    assert counted.body == {"count": 300}
    assert statuses(engine)[("bulk.a", "CANCELLED")] == 300

    retry = api.post("/jobs:retry", {"filter": {"type": "bulk.a", "status": "CANCELLED"}})
    assert retry.body == {"count": 300}
    after = jobs(engine)
    assert {job_id for job_id, row in after.items() if row.type == "bulk.a" and row.status == "READY"} == targets
    assert all(after[job_id].attempts == 0 and after[job_id].error_message is None for job_id in targets)
    assert {job_id: after[job_id] for job_id in before} == before, "a job outside the filter changed"
    assert api.post("/jobs:retry", {"filter": {"type": "bulk.a", "status": "CANCELLED"}}).body == {"count": 0}


def test_without_a_status_every_status_the_action_applies_to_over_several_batches(
    engine: Engine, stub: JobServiceStub
) -> None:
    """2,500 READY and 40 PENDING jobs of one type: three transactions of 1,000 and one more status."""
    ready = submit(engine, 2500, type="bulk.many")
    pending = submit(engine, 40, type="bulk.many", scheduled_in=timedelta(hours=1))
    running = submit(engine, 2, type="bulk.many")
    for job_id in running:
        make_processing(engine, job_id, attempts=1, expired=False)
    finished = submit(engine, 5, type="bulk.many")
    execute(engine, "UPDATE jobs SET status = 'COMPLETED', finished_at = now() WHERE job_id = ANY(:ids)", ids=finished)
    other = submit(engine, 10, type="bulk.other")

    filter = pb.JobFilter(type="bulk.many")
    assert stub.CancelJobs(pb.CancelJobsRequest(filter=filter, validate_only=True)).count == 2542
    assert stub.CancelJobs(pb.CancelJobsRequest(filter=filter)).count == 2542
    rows = jobs(engine)
    assert {rows[i].status for i in ready + pending} == {"CANCELLED"}
    # A running job is asked to stop (its executor writes CANCELLED), as CancelJob does.
    assert all(rows[i].status == "PROCESSING" and rows[i].cancel_requested for i in running)
    assert {rows[i].status for i in finished} == {"COMPLETED"}
    assert {rows[i].status for i in other} == {"READY"}
    # Repeated after a timeout: the running jobs' cancel was requested already, so nothing counts.
    assert stub.CancelJobs(pb.CancelJobsRequest(filter=filter)).count == 0

    execute(engine, "UPDATE jobs SET status = 'FAILED' WHERE job_id = ANY(:ids)", ids=ready[:700])
    assert stub.RetryJobs(pb.RetryJobsRequest(filter=filter)).count == 2540  # FAILED and CANCELLED
    rows = jobs(engine)
    assert {rows[i].status for i in ready + pending} == {"READY"}
    assert {rows[i].status for i in finished} == {"COMPLETED"}


def test_retry_skips_a_job_whose_unique_key_an_unfinished_job_holds(api: ApiServer, engine: Engine) -> None:
    (old,) = submit(engine, type="bulk.unique", unique_key="report-7")
    execute(engine, "UPDATE jobs SET status = 'FAILED', finished_at = now() WHERE job_id = :i", i=old)
    (holder,) = submit(engine, type="bulk.unique", unique_key="report-7")
    free = submit(engine, 3, type="bulk.unique")
    execute(engine, "UPDATE jobs SET status = 'FAILED', finished_at = now() WHERE job_id = ANY(:ids)", ids=free)
    assert api.post("/jobs:retry", {"filter": {"type": "bulk.unique"}}).body == {"count": 3}
    rows = jobs(engine)
    assert rows[old].status == "FAILED" and rows[holder].status == "READY"
    assert {rows[i].status for i in free} == {"READY"}


@pytest.mark.parametrize("path", ["/jobs:cancel", "/jobs:retry"])
def test_an_empty_filter_is_refused_and_changes_nothing(api: ApiServer, engine: Engine, path: str) -> None:
    submit(engine, 3, type="bulk.keep")
    bodies: list[dict[str, Any]] = [{}, {"filter": {}}, {"filter": {"type": ""}}, {"validate_only": True}]
    for body in bodies:
        reply = api.post(path, body)
        assert reply.status == 400, reply.body
        assert reply.body["status"] == "INVALID_ARGUMENT"
        assert reply.body["details"][-1]["fieldViolations"][0]["field"] == "filter"
    assert statuses(engine) == Counter({("bulk.keep", "READY"): 3})


def test_bad_filters_name_the_field(api: ApiServer, stub: JobServiceStub) -> None:
    cases = [
        ("/jobs:cancel", {"filter": {"status": "COMPLETED"}}, "filter.status"),
        ("/jobs:retry", {"filter": {"status": "READY"}}, "filter.status"),
        ("/jobs:cancel", {"filter": {"status": "BOGUS"}}, "filter.status"),
        ("/jobs:cancel", {"filter": {"created_after": "yesterday"}}, "filter.created_after"),
        (
            "/jobs:retry",
            {"filter": {"created_after": "2026-05-02T00:00:00Z", "created_before": "2026-05-01T00:00:00Z"}},
            "filter.created_before",
        ),
    ]
    for path, body, field in cases:
        reply = api.post(path, body)
        assert reply.status == 400, (body, reply.body)
        assert reply.body["details"][-1]["fieldViolations"][0]["field"] == field, (body, reply.body)
    with pytest.raises(grpc.RpcError) as raised:
        stub.RetryJobs(pb.RetryJobsRequest(filter=pb.JobFilter(status=pb.Job.PROCESSING)))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(raised.value) == ["filter.status"]
    with pytest.raises(grpc.RpcError) as raised:
        stub.CancelJobs(pb.CancelJobsRequest())
    assert field_violations(raised.value) == ["filter"]
