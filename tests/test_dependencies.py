"""Job dependencies through the real api, scheduler and executors: WAITING until every dependency
COMPLETED, CANCELLED with a reason when one FAILED or was cancelled, whole DAGs in one SubmitJobs."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import grpc
import psycopg2
import pytest
from google.protobuf import struct_pb2

from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer
from tests.support.processes import FAST_WORKER_ENV, ServiceProcess, wait_until
from tests.support.rpc_errors import field_violations

FAR_FUTURE = datetime(2099, 1, 1, tzinfo=timezone.utc)
FINISHED = (pb.Job.COMPLETED, pb.Job.FAILED, pb.Job.CANCELLED)
# No executor has a handler for this type, so its jobs stay READY.
UNHANDLED = "tests.no_handler"


@pytest.fixture(scope="module")
def three_executors(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A scheduler and three executors on the worker's database."""
    log_dir = tmp_path_factory.mktemp("dependency-workers")
    env = {"DATABASE_URL": database_url, **FAST_WORKER_ENV}
    processes = [ServiceProcess("services.scheduler", env, log_dir=log_dir).start()]
    processes += [
        ServiceProcess("services.executor", env, ["--concurrency", "4"], log_dir=log_dir).start() for _ in range(3)
    ]
    try:
        yield
    finally:
        for process in reversed(processes):
            process.stop()


def struct(**values: Any) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def request(job_type: str = "echo", **fields: Any) -> pb.SubmitJobRequest:
    scheduled_at = fields.pop("scheduled_at", None)
    payload = fields.pop("payload", {})
    message = pb.SubmitJobRequest(type=job_type, payload=struct(**payload), **fields)
    if scheduled_at is not None:
        message.scheduled_at.FromDatetime(scheduled_at)
    return message


def parked(stub: JobServiceStub) -> pb.Job:
    """A job that will not run during the test (scheduled in 2099), to depend on."""
    return stub.SubmitJob(request(scheduled_at=FAR_FUTURE)).job


def get(stub: JobServiceStub, job_id: int) -> pb.Job:
    return stub.GetJob(pb.GetJobRequest(job_id=job_id))


def wait_finished(stub: JobServiceStub, job_ids: Sequence[int], timeout: float = 60) -> dict[int, pb.Job]:
    wait_until(lambda: all(get(stub, i).status in FINISHED for i in job_ids), timeout, interval=0.1)
    return {i: get(stub, i) for i in job_ids}


def sql(db: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute(statement, args)
        return cur.fetchall()


def violation(error: grpc.RpcError) -> tuple[grpc.StatusCode, list[str]]:
    return error.code(), field_violations(error)


def seconds(timestamp: Any) -> float:
    return float(timestamp.ToDatetime(tzinfo=timezone.utc).timestamp())


def test_a_diamond_dag_in_one_call_runs_in_dependency_order(
    stub: JobServiceStub, three_executors: None, db: str
) -> None:
    #        extract
    #       /       \
    #  resize_a   resize_b     (run in parallel on different executors)
    #       \       /
    #        publish   ->  notify
    jobs = [
        request("sleep", payload={"seconds": 0.3}),
        request("sleep", payload={"seconds": 0.5}, depends_on_index=[0]),
        request("sleep", payload={"seconds": 0.5}, depends_on_index=[0]),
        request("echo", depends_on_index=[1, 2]),
        request("echo", depends_on_index=[3, 0]),
    ]
    results = stub.SubmitJobs(pb.SubmitJobsRequest(jobs=jobs)).results
    ids = [r.job.job_id for r in results]
    assert all(r.created for r in results)
    assert ids == sorted(ids)  # ids in request order
    assert results[0].job.status == pb.Job.READY
    assert [r.job.status for r in results[1:]] == [pb.Job.WAITING] * 4
    assert list(results[3].job.depends_on) == [ids[1], ids[2]]
    assert results[3].job.pending_dependencies == 2
    assert list(results[4].job.depends_on) == [ids[3], ids[0]]

    done = wait_finished(stub, ids)
    assert all(job.status == pb.Job.COMPLETED for job in done.values()), done
    edges = [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (0, 4)]
    for before, after in edges:
        assert seconds(done[ids[after]].started_at) >= seconds(done[ids[before]].finished_at), (before, after)
    assert all(job.pending_dependencies == 0 for job in done.values())
    # The two middle jobs overlapped: WAITING jobs are released together, not one after the other.
    assert seconds(done[ids[1]].started_at) < seconds(done[ids[2]].finished_at)
    assert sql(db, "SELECT count(*) FROM job_dependencies") == [(0,)]


def test_a_failed_dependency_cancels_every_job_that_waits_on_it(
    stub: JobServiceStub, three_executors: None, db: str
) -> None:
    unrelated = parked(stub)
    jobs = [
        request("fail", payload={"message": "boom", "permanent": True}, max_attempts=1),  # 0
        request("echo", depends_on_index=[0]),  # 1
        request("echo", depends_on_index=[1]),  # 2: through 1
        request("echo", depends_on_index=[2, 1]),  # 3
        request("echo", depends_on=[unrelated.job_id]),  # 4: does not depend on 0
        request("echo", depends_on=[unrelated.job_id], depends_on_index=[3]),  # 5
    ]
    ids = [r.job.job_id for r in stub.SubmitJobs(pb.SubmitJobsRequest(jobs=jobs)).results]
    done = wait_finished(stub, [ids[i] for i in (0, 1, 2, 3, 5)])
    assert done[ids[0]].status == pb.Job.FAILED
    for i in (1, 2, 3, 5):
        job = done[ids[i]]
        assert job.status == pb.Job.CANCELLED
        assert job.error_message == f"dependency {ids[0]} FAILED"  # names the job that broke the chain
        assert job.attempts == 0 and not job.HasField("started_at")
        assert job.HasField("finished_at")
        assert job.pending_dependencies == 0
    assert get(stub, ids[4]).status == pb.Job.WAITING
    assert get(stub, unrelated.job_id).status == pb.Job.PENDING
    # Only the edges of the job still waiting are left.
    assert sql(db, "SELECT depends_on, job_id FROM job_dependencies") == [(unrelated.job_id, ids[4])]

    # RetryJob re-queues only the failed job; what its failure cancelled stays cancelled.
    stub.RetryJob(pb.RetryJobRequest(job_id=ids[0]))
    assert wait_finished(stub, [ids[0]])[ids[0]].status == pb.Job.FAILED
    assert get(stub, ids[1]).status == pb.Job.CANCELLED


def test_dependencies_already_finished_at_submit(stub: JobServiceStub, three_executors: None) -> None:
    completed = stub.SubmitJob(request("echo")).job.job_id
    failed = stub.SubmitJob(request("fail", payload={"permanent": True}, max_attempts=1)).job.job_id
    cancelled = parked(stub).job_id
    stub.CancelJob(pb.CancelJobRequest(job_id=cancelled))
    wait_finished(stub, [completed, failed])

    ready = stub.SubmitJob(request("echo", depends_on=[completed, completed])).job
    assert ready.status == pb.Job.READY and ready.pending_dependencies == 0
    assert list(ready.depends_on) == [completed]  # duplicates count once
    later = stub.SubmitJob(request("echo", depends_on=[completed], scheduled_at=FAR_FUTURE)).job
    assert later.status == pb.Job.PENDING

    after_failure = stub.SubmitJob(request("echo", depends_on=[completed, failed])).job
    assert after_failure.status == pb.Job.CANCELLED
    assert after_failure.error_message == f"dependency {failed} FAILED"
    assert after_failure.HasField("finished_at")
    after_cancel = stub.SubmitJob(request("echo", depends_on=[cancelled])).job
    assert after_cancel.error_message == f"dependency {cancelled} CANCELLED"

    # In one batch: a job cancelled at submit passes the reason on to the jobs of the batch after it.
    results = stub.SubmitJobs(
        pb.SubmitJobsRequest(
            jobs=[
                request("echo", depends_on=[failed]),
                request("echo", depends_on_index=[0]),
                request("echo", depends_on=[completed]),
                request("echo", depends_on_index=[2]),
            ]
        )
    ).results
    assert [r.job.status for r in results] == [pb.Job.CANCELLED, pb.Job.CANCELLED, pb.Job.READY, pb.Job.WAITING]
    assert results[1].job.error_message == f"dependency {failed} FAILED"
    assert wait_finished(stub, [results[3].job.job_id])[results[3].job.job_id].status == pb.Job.COMPLETED
    assert wait_finished(stub, [ready.job_id])[ready.job_id].status == pb.Job.COMPLETED


def test_released_job_with_a_future_time_becomes_pending(stub: JobServiceStub, db: str) -> None:
    root = parked(stub)
    waiting = stub.SubmitJob(request("echo", depends_on=[root.job_id], scheduled_at=FAR_FUTURE)).job
    soon = stub.SubmitJob(request(UNHANDLED, depends_on=[root.job_id])).job
    assert waiting.status == soon.status == pb.Job.WAITING
    # Complete the root as an executor would (this test has none running).
    sql(db, "UPDATE jobs SET status = 'COMPLETED', finished_at = now() WHERE job_id = %s RETURNING 1", root.job_id)
    assert get(stub, waiting.job_id).status == pb.Job.PENDING
    assert get(stub, soon.job_id).status == pb.Job.READY
    assert get(stub, soon.job_id).pending_dependencies == 0


def test_a_missing_dependency_names_the_field_and_stores_nothing(stub: JobServiceStub, db: str) -> None:
    existing = parked(stub).job_id
    before = sql(db, "SELECT count(*), bool_or(has_dependents) FROM jobs")

    with pytest.raises(grpc.RpcError) as unary:
        stub.SubmitJob(request("echo", depends_on=[existing, existing + 1000]))
    assert violation(unary.value) == (grpc.StatusCode.INVALID_ARGUMENT, ["depends_on[1]"])
    assert f"job {existing + 1000} does not exist" in unary.value.details()

    with pytest.raises(grpc.RpcError) as batch:
        stub.SubmitJobs(
            pb.SubmitJobsRequest(
                jobs=[request("echo"), request("echo", depends_on_index=[0]), request("echo", depends_on=[987654])]
            )
        )
    assert violation(batch.value) == (grpc.StatusCode.INVALID_ARGUMENT, ["jobs[2].depends_on[0]"])
    assert sql(db, "SELECT count(*), bool_or(has_dependents) FROM jobs") == before
    assert sql(db, "SELECT count(*) FROM job_dependencies") == [(0,)]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: pb.SubmitJobRequest(type="echo", depends_on_index=[0]), "depends_on_index"),
        (lambda: pb.SubmitJobRequest(type="echo", depends_on=[0]), "depends_on[0]"),
        (lambda: pb.SubmitJobRequest(type="echo", depends_on=[-5]), "depends_on[0]"),
        (lambda: pb.SubmitJobRequest(type="echo", depends_on=list(range(1, 102))), "depends_on"),
        (
            lambda: pb.SubmitJobsRequest(
                jobs=[pb.SubmitJobRequest(type="echo"), pb.SubmitJobRequest(type="echo", depends_on_index=[1])]
            ),
            "jobs[1].depends_on_index[0]",
        ),
        (
            lambda: pb.SubmitJobsRequest(jobs=[pb.SubmitJobRequest(type="echo", depends_on_index=[0])]),
            "jobs[0].depends_on_index[0]",
        ),
        (
            lambda: pb.SubmitJobsRequest(
                jobs=[pb.SubmitJobRequest(type="echo"), pb.SubmitJobRequest(type="echo", depends_on_index=[-1])]
            ),
            "jobs[1].depends_on_index[0]",
        ),
    ],
)
def test_bad_dependencies_are_refused_naming_the_field(stub: JobServiceStub, db: str, call: Any, field: str) -> None:
    message = call()
    method = stub.SubmitJobs if isinstance(message, pb.SubmitJobsRequest) else stub.SubmitJob
    with pytest.raises(grpc.RpcError) as caught:
        method(message)
    assert violation(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, [field])
    assert sql(db, "SELECT count(*) FROM jobs") == [(0,)]


def test_cancel_of_a_waiting_job_cancels_it_and_what_waits_on_it(stub: JobServiceStub, db: str) -> None:
    root = parked(stub)
    child = stub.SubmitJob(request("echo", depends_on=[root.job_id])).job
    grandchild = stub.SubmitJob(request("echo", depends_on=[child.job_id, root.job_id])).job
    assert grandchild.pending_dependencies == 2

    cancelled = stub.CancelJob(pb.CancelJobRequest(job_id=child.job_id))
    assert cancelled.status == pb.Job.CANCELLED
    assert cancelled.error_message == "cancelled by request"
    assert cancelled.pending_dependencies == 0
    after = get(stub, grandchild.job_id)
    assert after.status == pb.Job.CANCELLED
    assert after.error_message == f"dependency {child.job_id} CANCELLED"
    assert get(stub, root.job_id).status == pb.Job.PENDING
    assert sql(db, "SELECT count(*) FROM job_dependencies") == [(0,)]

    # A cancelled waiting job can be retried: it runs at once, without waiting again.
    retried = stub.RetryJob(pb.RetryJobRequest(job_id=child.job_id))
    assert retried.status == pb.Job.READY
    assert list(retried.depends_on) == [root.job_id]


def test_a_chain_of_300_is_cancelled_in_one_go(stub: JobServiceStub, db: str) -> None:
    length = 300
    jobs = [request(scheduled_at=FAR_FUTURE)] + [request("echo", depends_on_index=[i - 1]) for i in range(1, length)]
    ids = [r.job.job_id for r in stub.SubmitJobs(pb.SubmitJobsRequest(jobs=jobs)).results]
    assert sql(db, "SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status") == [
        ("WAITING", length - 1),
        ("PENDING", 1),
    ]
    stub.CancelJob(pb.CancelJobRequest(job_id=ids[0]))
    # Done by the time CancelJob answered: one transaction, whatever the length.
    assert sql(db, "SELECT status, error_message, count(*) FROM jobs WHERE job_id <> %s GROUP BY 1, 2", ids[0]) == [
        ("CANCELLED", f"dependency {ids[0]} CANCELLED", length - 1)
    ]
    assert sql(db, "SELECT count(*) FROM job_dependencies") == [(0,)]


def test_the_last_link_of_a_long_chain_completes(stub: JobServiceStub, three_executors: None) -> None:
    jobs = [request("echo")] + [request("echo", depends_on_index=[i - 1]) for i in range(1, 60)]
    ids = [r.job.job_id for r in stub.SubmitJobs(pb.SubmitJobsRequest(jobs=jobs)).results]
    assert wait_finished(stub, [ids[-1]])[ids[-1]].status == pb.Job.COMPLETED


def test_jobs_depending_on_jobs_that_complete_during_the_submit_never_wait_forever(
    stub: JobServiceStub, three_executors: None, db: str
) -> None:
    """Dependencies finish while their dependents are being submitted: each dependent must either see
    the final state at submit or be released by the completion, never both missed."""
    rounds, threads = 60, 6
    barrier = threading.Barrier(threads)
    children: list[int] = []
    lock = threading.Lock()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        parents: list[int] = []
        barrier.wait()
        for _ in range(rounds):
            parents.append(stub.SubmitJob(request("echo")).job.job_id)
            depends_on = [parents[-1], *rng.sample(parents, min(len(parents), 2))]
            child = stub.SubmitJob(request("echo", depends_on=depends_on)).job.job_id
            with lock:
                children.append(child)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    assert len(children) == rounds * threads
    wait_until(
        lambda: sql(db, "SELECT count(*) FROM jobs WHERE status NOT IN ('COMPLETED')") == [(0,)],
        90,
        interval=0.2,
        what="every job COMPLETED",
    )
    assert sql(db, "SELECT count(*) FROM job_dependencies") == [(0,)]


def test_list_and_stats_show_waiting_jobs(stub: JobServiceStub) -> None:
    root = parked(stub)
    waiting = [stub.SubmitJob(request("echo", depends_on=[root.job_id])).job.job_id for _ in range(3)]
    listed = stub.ListJobs(pb.ListJobsRequest(status=pb.Job.WAITING))
    assert [job.job_id for job in listed.jobs] == waiting[::-1]
    wait_until(
        lambda: stub.GetStats(pb.GetStatsRequest()).status_breakdown["WAITING"] == 3,
        10,
        what="GetStats counts WAITING jobs",
    )


def test_rest_shapes_of_dependencies(api: ApiServer, db: str) -> None:
    root = api.post("/jobs", {"type": "echo", "scheduled_at": "2099-01-01T00:00:00Z"}).body
    assert root["depends_on"] == [] and root["pending_dependencies"] == 0
    batch = api.post(
        "/jobs:batch",
        {
            "jobs": [
                {"type": "echo", "depends_on": [root["job_id"]]},
                {"type": "echo", "depends_on_index": [0], "depends_on": [root["job_id"]]},
            ]
        },
    )
    assert batch.status == 200, batch.body
    first, second = (r["job"] for r in batch.body["results"])
    assert first["status"] == "WAITING"
    reply = api.get(f"/jobs/{second['job_id']}")
    assert reply.status == 200
    assert reply.body["status"] == "WAITING"
    assert reply.body["depends_on"] == [root["job_id"], first["job_id"]]
    assert reply.body["pending_dependencies"] == 2
    assert [j["job_id"] for j in api.get("/jobs?status=WAITING").body["jobs"]] == [second["job_id"], first["job_id"]]

    one = api.post("/jobs", {"type": "echo", "depends_on": [root["job_id"]]})
    assert one.status == 200 and one.body["status"] == "WAITING" and one.body["pending_dependencies"] == 1

    missing = api.post("/jobs:batch", {"jobs": [{"type": "echo"}, {"type": "echo", "depends_on": [99999999]}]})
    assert missing.status == 400
    assert missing.body["details"][1]["fieldViolations"][0]["field"] == "jobs[1].depends_on[0]"
    bad_index = api.post("/jobs", {"type": "echo", "depends_on_index": [0]})
    assert bad_index.status == 400
    assert "depends_on_index" in bad_index.body["message"]

    cancelled = api.post(f"/jobs/{root['job_id']}:cancel", {})
    assert cancelled.status == 200
    assert {api.get(f"/jobs/{j}").body["status"] for j in (first["job_id"], second["job_id"], one.body["job_id"])} == {
        "CANCELLED"
    }


def test_idempotent_replay_of_a_whole_dag_returns_the_same_jobs(stub: JobServiceStub, db: str) -> None:
    root = parked(stub)
    jobs = [
        request("echo", idempotency_key="dag-a", depends_on=[root.job_id]),
        request("echo", idempotency_key="dag-b", depends_on_index=[0]),
        request("echo", depends_on_index=[0, 1]),
    ]
    first = stub.SubmitJobs(pb.SubmitJobsRequest(jobs=jobs)).results
    again = stub.SubmitJobs(pb.SubmitJobsRequest(jobs=jobs)).results
    assert [r.created for r in first] == [True, True, True]
    assert [r.created for r in again] == [False, False, True]
    assert [r.job.job_id for r in again[:2]] == [r.job.job_id for r in first[:2]]
    # The new third job waits on the existing jobs the keys named.
    assert list(again[2].job.depends_on) == [first[0].job.job_id, first[1].job.job_id]
    assert again[2].job.status == pb.Job.WAITING and again[2].job.pending_dependencies == 2
    # root->a, a->b, and a, b -> each of the two third jobs.
    assert sql(db, "SELECT count(*) FROM job_dependencies") == [(6,)]
