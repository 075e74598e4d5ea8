"""Past one server's connection limit: the api and 60 executors through a real PgBouncer in transaction
pooling mode, in front of a private PostgreSQL that allows 40 connections; the scheduler connects
directly (it needs a session). DATABASE_POOLER=transaction is the one setting the pooled processes get.

Marked multiserver (private servers, 60 processes, minutes): `make test-multiserver` runs it, not
`make test`. Throughput is not asserted here (`python -m bench --scenarios pgbouncer` measures it).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct

from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.database import migrate, sql
from tests.support.pg_instance import PgInstance
from tests.support.pgbouncer import PgBouncer, PgBouncerUnavailable, ensure_installed
from tests.support.processes import ServiceProcess, free_port, wait_until

pytestmark = [pytest.mark.multiserver, pytest.mark.timeout(1800)]

MAX_CONNECTIONS = 40
POOL_SIZE = 20  # PgBouncer's server connections; the scheduler (up to 7) and the test's own fit beside them
JOBS = 20_000
UNARY_JOBS = 2_000  # of JOBS, submitted one by one from many threads: group commit through the pooler
EXECUTORS = 60
CONCURRENCY = 10
KILLED = 5
TOO_MANY = "too many clients"

WORKER_ENV = {
    "EXECUTOR_HANDLERS": "tests.handlers_for_tests",
    "EXECUTOR_LEASE_SECONDS": "10",
    "EXECUTOR_HEARTBEAT_INTERVAL_SECONDS": "2",
    "EXECUTOR_POLL_INTERVAL_SECONDS": "0.5",
    "EXECUTOR_SHUTDOWN_GRACE_SECONDS": "1",
    "SCHEDULER_RESCUE_INTERVAL_SECONDS": "0.5",
    "METRICS_PORT": "0",
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PgInstance, PgBouncer]]:
    """A private PostgreSQL (max_connections 40, migrated) and a transaction-mode PgBouncer in front."""
    try:
        ensure_installed()
    except PgBouncerUnavailable as error:
        pytest.skip(str(error))
    pg = PgInstance(tmp_path_factory.mktemp("pg"), settings={"max_connections": str(MAX_CONNECTIONS)})
    bouncer: PgBouncer | None = None
    try:
        pg.start()
        migrate(pg.url)
        # Behind a pooler no start-up options are sent: the database supplies what they set (docs/deploy.md).
        sql(pg.admin_url, f"ALTER DATABASE {pg.database} SET timezone = 'UTC'")
        sql(pg.admin_url, f"ALTER DATABASE {pg.database} SET statement_timeout = '30s'")
        bouncer = PgBouncer(pg.port, pool_mode="transaction", pool_size=POOL_SIZE).start()
        yield pg, bouncer
    finally:
        if bouncer is not None:
            bouncer.stop()
        pg.destroy()


def start_api(database_url: str, log_dir: Path, env: dict[str, str]) -> tuple[ServiceProcess, int]:
    grpc_port = free_port()
    api = ServiceProcess(
        "services.api",
        {"DATABASE_URL": database_url, "GRPC_PORT": str(grpc_port), "HTTP_PORT": str(free_port()), **env},
        log_dir=log_dir,
    ).start()
    return api, grpc_port


def test_without_database_pooler_a_process_says_what_to_set(
    servers: tuple[PgInstance, PgBouncer], tmp_path: Path
) -> None:
    pg, bouncer = servers
    api, _ = start_api(bouncer.url(pg.database), tmp_path, {})
    try:
        wait_until(lambda: "set DATABASE_POOLER=transaction" in api.output(), 60, 0.2, "the api's hint")
    finally:
        api.stop()
    assert "unsupported startup parameter: options" in api.output()


class ConnectionSampler:
    """Samples, every 0.2 s, the server's client backends and PgBouncer's client connections."""

    def __init__(self, pg: PgInstance, bouncer: PgBouncer) -> None:
        self.pg, self.bouncer = pg, bouncer
        self.server_max = self.clients_max = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            (backends,) = sql(
                self.pg.admin_url, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            )
            self.server_max = max(self.server_max, backends[0])
            self.clients_max = max(self.clients_max, self.bouncer.pools(self.pg.database)[0])
            self.samples += 1


def submit_all(grpc_port: int) -> None:
    """JOBS tests.record jobs through the api: UNARY_JOBS one by one from 16 threads, the rest in batches."""
    payload = Struct()
    payload.update({"seconds": 0.05})
    request = pb.SubmitJobRequest(type="tests.record", payload=payload, max_attempts=5)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = JobServiceStub(channel)
        with ThreadPoolExecutor(16) as pool:
            created = list(pool.map(lambda _: stub.SubmitJob(request, timeout=60).created, range(UNARY_JOBS)))
        assert all(created)
        for _ in range((JOBS - UNARY_JOBS) // 1000):
            reply = stub.SubmitJobs(pb.SubmitJobsRequest(jobs=[request] * 1000), timeout=120)
            assert len(reply.results) == 1000


def started_or_exited(executor: ServiceProcess) -> bool:
    return " started: " in executor.output() or not executor.alive()


def lease_holders(pg: PgInstance, executors: list[ServiceProcess]) -> list[ServiceProcess]:
    """The executors that hold a lease now (an executor id is host-pid-suffix)."""
    rows = sql(pg.url, "SELECT DISTINCT lease_owner FROM jobs WHERE status = 'PROCESSING'")
    owners = " ".join(row[0] for row in rows)
    return [e for e in executors if f"-{e.pid}-" in owners]


def count(pg: PgInstance, where: str) -> int:
    return int(sql(pg.url, f"SELECT count(*) FROM jobs WHERE {where}")[0][0])


def test_sixty_executors_drain_through_pgbouncer_while_five_are_killed(
    servers: tuple[PgInstance, PgBouncer], tmp_path: Path
) -> None:
    pg, bouncer = servers
    records = tmp_path / "records"
    records.mkdir()
    pooled = {**WORKER_ENV, "DATABASE_URL": bouncer.url(pg.database), "DATABASE_POOLER": "transaction"}
    scheduler = ServiceProcess("services.scheduler", {**WORKER_ENV, "DATABASE_URL": pg.url}, log_dir=tmp_path)
    api, grpc_port = start_api(bouncer.url(pg.database), tmp_path, {"DATABASE_POOLER": "transaction"})
    executors = [
        ServiceProcess(
            "services.executor",
            {**pooled, "RECORD_DIR": str(records), "EXECUTOR_CONCURRENCY": str(CONCURRENCY)},
            log_dir=tmp_path,
        )
        for _ in range(EXECUTORS)
    ]
    killed: list[ServiceProcess] = []
    try:
        with ConnectionSampler(pg, bouncer) as sampler:
            api.wait_for_port(grpc_port, timeout=300)
            scheduler.start()
            # Ten at a time: sixty interpreters importing at once would starve a small machine for minutes.
            for first in range(0, EXECUTORS, 10):
                batch = executors[first : first + 10]
                for executor in batch:
                    executor.start()
                for executor in batch:
                    wait_until(partial(started_or_exited, executor), 300, 0.2, "executors")
                    assert executor.alive(), executor.output()[-3000:]

            submitting = time.monotonic()
            submitter = ThreadPoolExecutor(1)
            submitted = submitter.submit(submit_all, grpc_port)
            # Kill, mid-drain, five executors that hold leases (so they die with jobs in their hands), while the
            # jobs still arrive. One look can catch a moment when few executors hold a lease (jobs are short, and
            # a loaded machine submits in bursts), so look again until five do at once.
            holders: list[ServiceProcess] = []

            def a_fifth_completed() -> bool:
                if submitted.done():
                    submitted.result()  # a failed submit fails the test now
                return count(pg, "status = 'COMPLETED'") >= JOBS // 5

            def five_hold_leases() -> bool:
                holders[:] = lease_holders(pg, executors)
                return len(holders) >= KILLED

            wait_until(a_fifth_completed, 600, 0.2, "a fifth of the jobs")
            wait_until(five_hold_leases, 300, 0.05, "five executors holding leases at once")
            killed = holders[:KILLED]
            for executor in killed:
                executor.signal(signal.SIGKILL)
            submitted.result(timeout=600)
            submitter.shutdown()

            wait_until(lambda: count(pg, "status = 'COMPLETED'") == JOBS, 900, 0.5, "every job to complete")
            drained_in = time.monotonic() - submitting
            time.sleep(1)  # a last sample with everything idle
        assert count(pg, "true") == JOBS
    finally:
        for process in [*executors, api, scheduler]:
            if process.alive():
                process.signal(signal.SIGTERM)
        for process in [*executors, api, scheduler]:
            process.stop(timeout=20)

    # Every job ran; per job, at most one execution was on an executor that was never killed.
    killed_pids = {str(e.pid) for e in killed}
    runs: dict[int, list[str]] = {}
    for path in records.glob("*.log"):
        for line in path.read_text().splitlines():
            runs.setdefault(int(line.split()[0]), []).append(path.stem)
    assert len(runs) == JOBS
    duplicated = {job_id: pids for job_id, pids in runs.items() if len(pids) > 1}
    assert all(sum(pid not in killed_pids for pid in pids) <= 1 for pids in duplicated.values()), duplicated
    # The server never had more connections than it allows, while PgBouncer served many more clients.
    assert sampler.samples > 10
    assert sampler.server_max <= MAX_CONNECTIONS
    assert sampler.clients_max > MAX_CONNECTIONS, sampler.clients_max
    logs = {"api": api.output(), "scheduler": scheduler.output()} | {
        f"executor {e.pid}": e.output() for e in executors if e not in killed
    }
    assert not [name for name, text in logs.items() if TOO_MANY in text]
    # Each process said at start how it connects, and found the settings it needs.
    assert "database: DATABASE_POOLER=none" in logs["scheduler"]
    assert all("database: DATABASE_POOLER=transaction" in text for name, text in logs.items() if name != "scheduler")
    assert not [name for name, text in logs.items() if "lacks settings" in text or "were not applied" in text]
    print(
        f"\n{JOBS} jobs, {EXECUTORS} executors x {CONCURRENCY} through PgBouncer ({POOL_SIZE} server connections), "
        f"{KILLED} killed: {len(duplicated)} jobs ran twice, all on killed executors; at most "
        f"{sampler.server_max} server connections (max_connections {MAX_CONNECTIONS}) for up to "
        f"{sampler.clients_max} PgBouncer clients; submitted and drained in {drained_in:.0f} s (a loaded machine); "
        f"executions per job {dict(Counter(len(p) for p in runs.values()))}"
    )
