"""Both distributions as a user installs them: each wheel built from the repository, installed into a fresh
venv of its own (``python -m venv`` and pip, nothing of the development venv), and run from a folder
outside the checkout.

- The client (clients/python) alone: ``import jobclient`` and ``jobctl`` submit and watch a job on a
  running api, with none of the server's dependencies installed.
- The server (the root project): ``jobservice migrate`` brings an empty database to the schema, then
  ``jobservice api`` serves ``/health``, with the migrations and code from the wheel only.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from shared.database.engine import create_database_engine
from shared.database.schema import SCHEMA_REVISION
from tests.support.api import ApiServer
from tests.support.database import fresh_database, server_url
from tests.support.gateway import gateway
from tests.support.processes import ServiceProcess, free_port
from tests.support.wheels import (
    PIP_TIMEOUT_SECONDS,
    build_wheel,
    clean_env,
    client_sources,
    fresh_venv,
    installed_packages,
    run,
    server_sources,
)

# A wheel built and installed with its dependencies into a fresh venv: minutes on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(PIP_TIMEOUT_SECONDS + 600)]

# What `pip install` of the whole project used to pull in and a client must not need.
SERVER_ONLY_PACKAGES = {"sqlalchemy", "psycopg2", "psycopg2-binary", "alembic", "aiohttp", "opentelemetry-sdk"}

CLIENT_SCRIPT = """
import json, sys
import jobclient
from jobclient import JobClient

with JobClient(sys.argv[1]) as client:
    job = client.submit("echo", {"from": "a client-only venv"})
    updates = list(client.watch(job.job_id, timeout=120))
print(json.dumps({
    "job_id": job.job_id,
    "module": jobclient.__file__,
    "statuses": [update.status.value for update in updates],
    "result": updates[-1].result,
    "server_modules": sorted(name for name in sys.modules if name.split(".")[0] in ("services", "shared")),
}))
"""


def test_the_client_installs_alone_and_submits_and_watches_a_job(tmp_path: Path, api: ApiServer, workers: None) -> None:
    wheel = build_wheel(client_sources(), tmp_path)
    bin_dir = fresh_venv(tmp_path / "client-venv", str(wheel))
    installed = installed_packages(bin_dir)
    assert "jobclient" in installed
    assert not installed & SERVER_ONLY_PACKAGES, installed & SERVER_ONLY_PACKAGES
    assert "jobservice" not in installed

    elsewhere = tmp_path / "elsewhere"  # a folder outside the checkout, with nothing of the project in it
    elsewhere.mkdir()
    target = f"127.0.0.1:{api.grpc_port}"
    report = json.loads(run([str(bin_dir / "python"), "-c", CLIENT_SCRIPT, target], elsewhere).splitlines()[-1])
    assert Path(report["module"]).is_relative_to(tmp_path / "client-venv"), report["module"]
    assert report["server_modules"] == []
    assert report["statuses"][-1] == "COMPLETED", report
    assert report["result"] == {"from": "a client-only venv"}

    assert run([str(bin_dir / "jobctl"), "--version"], elsewhere).strip() == "jobctl 0.1.0"
    watched = run([str(bin_dir / "jobctl"), "--server", target, "--json", "watch", str(report["job_id"])], elsewhere)
    assert json.loads(watched.splitlines()[-1])["status"] == "COMPLETED"


def test_the_server_wheel_migrates_an_empty_database_and_serves(tmp_path: Path) -> None:
    wheel = build_wheel(server_sources(), tmp_path)
    bin_dir = fresh_venv(tmp_path / "server-venv", str(wheel))
    installed = installed_packages(bin_dir)
    assert "jobservice" in installed and "jobclient" not in installed
    jobservice = str(bin_dir / "jobservice")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run([str(bin_dir / "python"), "-c", "import services, shared; print(services.__file__)"], elsewhere)
    assert Path(where.strip()).is_relative_to(tmp_path / "server-venv"), where
    assert run([jobservice, "--version"], elsewhere).strip() == "jobservice 0.1.0"
    # A process subcommand is the module's own command line: its flags and its --help.
    assert "--concurrency N" in run([jobservice, "executor", "--help"], elsewhere)

    with fresh_database(server_url(), "wheel", migrated=False) as url:
        env = clean_env(DATABASE_URL=url)
        output = run([jobservice, "migrate"], elsewhere, env)
        assert "Running upgrade  -> 0001" in output and "the schema is up to date" in output, output
        assert "Traceback" not in output and "Logging error" not in output, output
        engine = create_database_engine(url, "tests")
        try:
            assert gateway(engine).schema_revision() == SCHEMA_REVISION
        finally:
            engine.dispose()
        assert "the schema is up to date" in run([jobservice, "migrate"], elsewhere, env)  # again: nothing to do

        grpc_port, http_port = free_port(), free_port()
        settings = {"GRPC_PORT": str(grpc_port), "HTTP_PORT": str(http_port)}
        api = ServiceProcess(
            "services.api", {**env, **settings}, command=[jobservice, "api"], cwd=elsewhere, log_dir=tmp_path
        ).start()
        try:
            api.wait_for_port(http_port, timeout=60)
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=10) as response:
                assert response.status == 200
                assert json.loads(response.read()) == {"status": "ok"}
        finally:
            assert api.stop() == 0, api.output()
