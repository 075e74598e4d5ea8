"""Shared fixtures: a fresh, migrated PostgreSQL database per test run and xdist worker."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import grpc
import pytest
from sqlalchemy import Engine

from shared.database.engine import create_database_engine
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.api import TEST_TOKEN, ApiServer, insecure_channel, make_certificate, running_api
from tests.support.database import fresh_database, server_url, truncate_jobs
from tests.support.executors import Executor
from tests.support.gateway import release
from tests.support.processes import FAST_WORKER_ENV, ServiceProcess, free_port


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated database of this worker's own, dropped at the end of the run."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with fresh_database(server_url(), worker) as url:
        yield url


@pytest.fixture
def db(database_url: str) -> str:
    """The worker's database, emptied before the test."""
    truncate_jobs(database_url)
    return database_url


@pytest.fixture
def engine(db: str) -> Iterator[Engine]:
    engine = create_database_engine(db, "tests")
    yield engine
    release(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def api_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One real ``python -m services.api`` per worker, on free ports, against the worker's database."""
    grpc_port, http_port = free_port(), free_port()
    process = ServiceProcess(
        "services.api",
        {"DATABASE_URL": database_url, "GRPC_PORT": str(grpc_port), "HTTP_PORT": str(http_port)},
        log_dir=tmp_path_factory.mktemp("api-logs"),
    ).start()
    try:
        process.wait_for_port(http_port).wait_for_port(grpc_port)
        yield ApiServer(process, grpc_port, http_port)
    finally:
        process.stop()


@pytest.fixture
def api(api_server: ApiServer, db: str) -> ApiServer:
    """The worker's api server, over an emptied database."""
    return api_server


@pytest.fixture(scope="session")
def grpc_channel(api_server: ApiServer) -> Iterator[grpc.Channel]:
    with insecure_channel(api_server) as channel:
        yield channel


@pytest.fixture
def stub(api: ApiServer, grpc_channel: grpc.Channel) -> JobServiceStub:
    return JobServiceStub(grpc_channel)


@pytest.fixture(scope="module")
def secure_api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, Path]]:
    """An api that needs the bearer token TEST_TOKEN and serves TLS; with its self-signed certificate."""
    directory = tmp_path_factory.mktemp("secure-api")
    cert, key = make_certificate(directory)
    env = {"API_TOKENS": TEST_TOKEN, "TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key)}
    with running_api(database_url, directory, env) as api:
        yield api, cert


@pytest.fixture(scope="module")
def workers(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A scheduler and an executor (built-in, test and example handlers) on the worker's database."""
    log_dir = tmp_path_factory.mktemp("workers")
    env = {"DATABASE_URL": database_url, **FAST_WORKER_ENV}
    scheduler = ServiceProcess("services.scheduler", env, log_dir=log_dir).start()
    executor = ServiceProcess("services.executor", env, ["--concurrency", "8"], log_dir=log_dir).start()
    try:
        yield
    finally:
        executor.stop()
        scheduler.stop()


@pytest.fixture
def executors(db: str) -> Iterator[list[Executor]]:
    """Executors started by the test (``start_executor``), stopped at its end."""
    started: list[Executor] = []
    yield started
    for process in started:
        process.stop(timeout=15)


@pytest.fixture
def start_executor(db: str, executors: list[Executor]) -> Callable[..., Executor]:
    """Start an executor (``start_executor(*args, env=..., database_url=...)``) and wait until it runs."""

    def start(*args: str, env: Mapping[str, str] | None = None, database_url: str | None = None) -> Executor:
        process = Executor(database_url or db, args, env)
        process.start()
        executors.append(process)
        return process.wait_started()

    return start
