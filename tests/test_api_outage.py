"""The api survives its database going away: UNAVAILABLE (503) meanwhile, serving again once it is back."""

from __future__ import annotations

from pathlib import Path

import grpc
import psycopg2
import pytest

from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import ApiServer
from tests.support.database import migrate
from tests.support.pg_instance import PgInstance
from tests.support.processes import ServiceProcess, free_port, wait_until

pytestmark = pytest.mark.slow


def test_api_reports_unavailable_and_recovers_by_itself(tmp_path: Path) -> None:
    with PgInstance(tmp_path / "pg") as pg:
        migrate(pg.url)
        grpc_port, http_port = free_port(), free_port()
        env = {"DATABASE_URL": pg.url, "GRPC_PORT": str(grpc_port), "HTTP_PORT": str(http_port)}
        with ServiceProcess("services.api", env, log_dir=tmp_path).start() as process:
            process.wait_for_port(http_port).wait_for_port(grpc_port)
            api = ApiServer(process, grpc_port, http_port)
            job = api.post("/jobs", {"type": "before", "idempotency_key": "outage-1"}).body

            pg.stop()
            refused = api.post("/jobs", {"type": "during"})
            assert refused.status == 503
            assert refused.body["status"] == "UNAVAILABLE"
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                with pytest.raises(grpc.RpcError) as caught:
                    JobServiceStub(channel).GetJob(pb.GetJobRequest(job_id=job["job_id"]), timeout=30)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert api.get("/health").body == {"status": "ok"}
            assert process.alive()

            pg.start()
            wait_until(lambda: api.get(f"/jobs/{job['job_id']}").status == 200, 30, 0.2, "the api to recover")
            replay = api.post("/jobs", {"type": "before", "idempotency_key": "outage-1"}).body
            assert replay["job_id"] == job["job_id"]

            # Connections cut from the server side are replaced too.
            with psycopg2.connect(pg.admin_url) as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'jobservice-api'"
                )
            wait_until(lambda: api.post("/jobs", {"type": "after"}).status == 200, 30, 0.2, "a fresh connection")
            assert process.alive()


def test_api_waits_for_a_database_that_is_not_up_yet(tmp_path: Path) -> None:
    pg = PgInstance(tmp_path / "pg")
    pg.start()
    migrate(pg.url)
    pg.stop()
    grpc_port, http_port = free_port(), free_port()
    env = {"DATABASE_URL": pg.url, "GRPC_PORT": str(grpc_port), "HTTP_PORT": str(http_port)}
    try:
        with ServiceProcess("services.api", env, log_dir=tmp_path).start() as process:
            wait_until(lambda: "waiting for the database" in process.output(), 20, 0.1, "a waiting message")
            assert process.alive()
            pg.start()
            process.wait_for_port(http_port)
            api = ApiServer(process, grpc_port, http_port)
            assert api.post("/jobs", {"type": "late-start"}).status == 200
    finally:
        pg.destroy()
