"""A request that takes too long fails with DEADLINE_EXCEEDED (504) and the api keeps serving."""

from __future__ import annotations

from pathlib import Path

import psycopg2

from tests.support.api import running_api


def test_slow_request_hits_the_server_deadline(database_url: str, db: str, tmp_path: Path) -> None:
    with running_api(database_url, tmp_path, {"REQUEST_TIMEOUT_SECONDS": "0.5"}) as api:
        # An uncommitted insert of the same key makes the api's insert wait inside the database.
        blocker = psycopg2.connect(db)
        try:
            with blocker.cursor() as cur:
                cur.execute(
                    "INSERT INTO jobs (type, status, timeout_seconds, idempotency_key) "
                    "VALUES ('slow', 'READY', 30, 'held')"
                )
            reply = api.post("/jobs:batch", {"jobs": [{"type": "slow", "idempotency_key": "held"}]})
            assert reply.status == 504
            assert reply.body["status"] == "DEADLINE_EXCEEDED"
            assert "SubmitJobs" in reply.body["message"]
        finally:
            blocker.rollback()
            blocker.close()
        assert api.get("/health").body == {"status": "ok"}
        assert api.post("/jobs", {"type": "after"}).status == 200
        assert 'rpc_requests_total{code="DEADLINE_EXCEEDED",method="SubmitJobs"}' in api.get("/metrics").body
