"""What every scenario needs: a fresh database, the services running against it, and cheap counts.

A scenario opens a :class:`Cluster` (``with Cluster.start(ctx, "drain") as cluster``): a database of
its own, created and migrated on the server at ``ctx.server_url`` and dropped at the end, with the
api and the scheduler running against it. Executors are started and stopped by the scenario.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from tests.support.database import migrate, with_database
from tests.support.processes import ServiceProcess, free_port, port_open

__all__ = [
    "ROOT",
    "BenchContext",
    "Cluster",
    "CpuWindow",
    "ExecutorSet",
    "busy_fraction",
    "connect",
    "cpu_seconds",
    "job_counts",
    "status_counts",
    "system_cpu_ticks",
    "truncate_jobs",
    "wait_for",
]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Services start slowly on a loaded two-core machine.
START_TIMEOUT_SECONDS = 60.0
ACTIVE = ("PENDING", "READY", "PROCESSING")


@dataclass
class BenchContext:
    """Where scenarios create their databases and write their logs, and the services' environment."""

    server_url: str = DEFAULT_SERVER_URL
    log_dir: Path = field(default_factory=lambda: Path(os.environ.get("TMPDIR", "/tmp")))
    # Extra environment for every service process, then per service (api, scheduler, executor).
    service_env: dict[str, str] = field(default_factory=dict)
    api_env: dict[str, str] = field(default_factory=dict)
    scheduler_env: dict[str, str] = field(default_factory=dict)
    executor_env: dict[str, str] = field(default_factory=dict)
    verbose: bool = False

    def say(self, message: str) -> None:
        """Progress on stderr-like output, only with --verbose."""
        if self.verbose:
            print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def connect(url: str) -> Any:
    """An autocommit psycopg2 connection (reads see every commit at once)."""
    conn = psycopg2.connect(url, application_name="jobs-bench")
    conn.autocommit = True
    return conn


def status_counts(conn: Any) -> dict[str, int]:
    """Jobs per status from job_counts, the delta rows the jobs table's triggers append.

    This is what GetStats reads: it costs a few hundred rows at most, however many jobs there are, so
    polling it does not disturb the measurement the way ``count(*)`` over the jobs table would.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT status::text, sum(jobs)::bigint FROM job_counts GROUP BY status")
        counts = {status: int(jobs) for status, jobs in cur.fetchall()}
    return {status: counts.get(status, 0) for status in (*ACTIVE, "COMPLETED", "FAILED", "CANCELLED")}


def job_counts(conn: Any) -> dict[str, int]:
    """Jobs per status counted in the jobs table itself: the check of :func:`status_counts`."""
    with conn.cursor() as cur:
        cur.execute("SELECT status::text, count(*) FROM jobs GROUP BY status")
        return {status: int(count) for status, count in cur.fetchall()}


def truncate_jobs(conn: Any) -> None:
    """Empty the jobs table and its counts (no executor may be running)."""
    with conn.cursor() as cur:
        cur.execute("TRUNCATE jobs, job_counts, job_attempts RESTART IDENTITY")


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process and its live descendants have used so far (0 when gone):
    an api started with API_PROCESSES > 1 does its work in child processes."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    family, frontier = set(), [pid]
    while frontier:
        current = frontier.pop()
        if current in stats and current not in family:
            family.add(current)
            frontier += [child for child, fields in stats.items() if int(fields[1]) == current]
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(stats[p][11]) + int(stats[p][12]) for p in family) / ticks


def system_cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat; (0, 0) where there is none."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How busy the machine's CPUs were between two :func:`system_cpu_ticks` readings (0..1)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else float("nan")


@contextlib.contextmanager
def fresh_database(server_url: str, label: str) -> Iterator[str]:
    """A new, migrated database on the server (``jobs_bench_<label>_<random>``), dropped afterwards."""
    name = f"jobs_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = connect(server_url)
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        url = with_database(server_url, name)
        try:
            migrate(url)
            yield url
        finally:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


class ExecutorSet:
    """E ``python -m services.executor`` processes with the same settings."""

    def __init__(
        self,
        cluster: Cluster,
        count: int,
        concurrency: int | None,
        env: Mapping[str, str] | None = None,
        types: str = "echo",
    ) -> None:
        """``concurrency`` None: the executors' default (EXECUTOR_CONCURRENCY not set here)."""
        self.cluster = cluster
        self.count = count
        self.concurrency = concurrency
        self.env = {
            **cluster.ctx.service_env,
            **cluster.ctx.executor_env,
            "DATABASE_URL": cluster.database_url,
            **(env or {}),
            **({"EXECUTOR_CONCURRENCY": str(concurrency)} if concurrency is not None else {}),
            "EXECUTOR_TYPES": types,
        }
        self.ports = [free_port() for _ in range(count)]
        self.processes = [
            ServiceProcess(
                "services.executor",
                {**self.env, "METRICS_PORT": str(port)},
                log_dir=cluster.ctx.log_dir,
            )
            for port in self.ports
        ]
        self.launched_at = 0.0
        self.ready_at = 0.0

    def settings(self) -> dict[str, Any]:
        """The effective executor settings (as the executor reads them from this environment)."""
        from services.executor.settings import ExecutorSettings

        # The processes inherit this environment too (ServiceProcess), so EXECUTOR_* set in the shell count.
        settings = dataclasses.asdict(ExecutorSettings.from_env({**os.environ, **self.env}))
        settings.pop("database_url", None)
        settings.pop("metrics_port", None)  # one free port per executor
        settings.pop("egress", None)  # where jobs may connect: no bearing on speed (and holds the metrics port)
        return {"executors": self.count, **settings}

    def launch(self) -> float:
        """Start every executor; the monotonic time of the launch."""
        self.launched_at = time.monotonic()
        for process in self.processes:
            process.start()
        return self.launched_at

    def wait_ready(self) -> float:
        """Wait until every executor serves its metrics port (it has imported everything and is about to
        connect); the monotonic time when the last one was."""
        pending = list(zip(self.processes, self.ports, strict=True))
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while pending:
            for process, port in list(pending):
                if not process.alive():
                    raise RuntimeError(f"an executor exited early:\n{process.output()[-3000:]}")
                if port_open(port):
                    pending.remove((process, port))
            if pending:
                if time.monotonic() > deadline:
                    raise TimeoutError("executors did not start in time")
                time.sleep(0.01)
        self.ready_at = time.monotonic()
        return self.ready_at

    def start(self) -> ExecutorSet:
        self.launch()
        self.wait_ready()
        return self

    def cpu_seconds(self) -> list[float]:
        return [cpu_seconds(process.pid) for process in self.processes if process.process is not None]

    def stop(self) -> None:
        for process in self.processes:
            if process.alive():
                process.signal(15)
        for process in self.processes:
            process.stop(timeout=20)

    def __enter__(self) -> ExecutorSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CpuWindow:
    """CPU the services use between :meth:`start` and :meth:`stop`, in cores (1.0 = one core busy)."""

    def __init__(self, cluster: Cluster, fleet: ExecutorSet | None = None) -> None:
        self.cluster = cluster
        self.fleet = fleet
        self._began = 0.0
        self._before: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        readings = dict(self.cluster.service_cpu_seconds())
        if self.fleet is not None:
            readings.update({f"executor{i + 1}": cpu for i, cpu in enumerate(self.fleet.cpu_seconds())})
        return readings

    def start(self) -> None:
        self._began = time.monotonic()
        self._before = self._read()

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._began
        after = self._read()
        return {name: round((after[name] - self._before.get(name, 0.0)) / elapsed, 3) for name in after}


class Cluster:
    """A fresh database with the api and the scheduler running against it."""

    def __init__(self, ctx: BenchContext, database_url: str) -> None:
        self.ctx = ctx
        self.database_url = database_url
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.scheduler_port = free_port()
        common = {**ctx.service_env, "DATABASE_URL": database_url}
        self.api = ServiceProcess(
            "services.api",
            {**common, **ctx.api_env, "GRPC_PORT": str(self.grpc_port), "HTTP_PORT": str(self.http_port)},
            log_dir=ctx.log_dir,
        )
        self.scheduler = ServiceProcess(
            "services.scheduler",
            {**common, **ctx.scheduler_env, "METRICS_PORT": str(self.scheduler_port)},
            log_dir=ctx.log_dir,
        )
        self.conn: Any = None

    @property
    def target(self) -> str:
        """The api's gRPC address for clients."""
        return f"127.0.0.1:{self.grpc_port}"

    @classmethod
    @contextlib.contextmanager
    def start(cls, ctx: BenchContext, label: str, scheduler: bool = True) -> Iterator[Cluster]:
        with fresh_database(ctx.server_url, label) as url:
            cluster = cls(ctx, url)
            ctx.say(f"{label}: database {url.rsplit('/', 1)[-1]}; starting the api and the scheduler")
            try:
                cluster.conn = connect(url)
                cluster.api.start()
                if scheduler:
                    cluster.scheduler.start()
                cluster.api.wait_for_port(cluster.grpc_port, START_TIMEOUT_SECONDS)
                if scheduler:
                    cluster.scheduler.wait_for_port(cluster.scheduler_port, START_TIMEOUT_SECONDS)
                yield cluster
            finally:
                cluster.api.stop()
                cluster.scheduler.stop()
                if cluster.conn is not None:
                    cluster.conn.close()

    def executors(
        self, count: int, concurrency: int | None, env: Mapping[str, str] | None = None, types: str = "echo"
    ) -> ExecutorSet:
        """E executors of ``types`` (comma-separated) for this cluster, not yet started; ``concurrency``
        None: the executors' default."""
        return ExecutorSet(self, count, concurrency, env, types)

    def counts(self) -> dict[str, int]:
        return status_counts(self.conn)

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on the cluster's own connection; its rows (if any)."""
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description is not None else []

    def service_cpu_seconds(self) -> dict[str, float]:
        return {
            "api": cpu_seconds(self.api.pid) if self.api.process else 0.0,
            "scheduler": cpu_seconds(self.scheduler.pid) if self.scheduler.process else 0.0,
        }
