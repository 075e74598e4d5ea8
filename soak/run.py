"""One soak run: the stack on a fresh database, the load, the executor kills, the samples, the accounting."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from bench.harness import ROOT, START_TIMEOUT_SECONDS, BenchContext, Cluster, cpu_seconds
from soak.load import EXPECTED, Producer
from tests.support.pg_instance import PgInstance
from tests.support.processes import ServiceProcess, free_port

__all__ = ["SoakConfig", "SoakResult", "run_soak"]

ACTIVE = ("PENDING", "READY", "PROCESSING")


@dataclass(frozen=True)
class SoakConfig:
    minutes: float = 10.0
    rate: float = 500.0  # jobs/s offered
    executors: int = 3
    concurrency: int = 20  # per executor
    kill_min_seconds: float = 30.0
    kill_max_seconds: float = 60.0
    sample_seconds: float = 10.0
    lease_seconds: float = 5.0
    drain_timeout: float = 180.0
    seed: int = 0
    server_url: str = ""
    private_server: bool = False  # a PostgreSQL of the soak's own (pgserver's PostgreSQL 16), default settings
    keep_logs: bool = False
    verbose: bool = True


@dataclass
class Process:
    """A service process the soak watches, by the name it reports it under."""

    name: str
    service: ServiceProcess
    started: float  # seconds into the run
    ended: float | None = None
    killed: bool = False
    rss_mb: list[float] = field(default_factory=list)
    cpu_at_last_sample: float = 0.0


@dataclass
class SoakResult:
    config: dict[str, Any]
    started_at: str
    git_commit: str
    database: str
    server: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    load_began_seconds: float = 0.0
    load_ended_seconds: float = 0.0
    interrupted: bool = False
    intervals: list[dict[str, Any]] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounting: dict[str, Any] = field(default_factory=dict)
    duplicates: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (VmRSS of /proc/<pid>/status); 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _git_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip()


def _stop_on_sigterm() -> None:
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


class Soak:
    def __init__(self, config: SoakConfig, cluster: Cluster, log_dir: Path, record_dir: Path) -> None:
        self.config = config
        self.cluster = cluster
        self.log_dir = log_dir
        self.record_dir = record_dir
        self.random = random.Random(config.seed)
        self.run_id = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
        self.began = time.monotonic()
        self.processes: list[Process] = [
            Process("api", cluster.api, 0.0),
            Process("scheduler", cluster.scheduler, 0.0),
        ]
        self.executor_count = 0
        self.executor_env = {
            **cluster.ctx.service_env,
            "DATABASE_URL": cluster.database_url,
            "EXECUTOR_HANDLERS": "tests.handlers_for_tests",
            "RECORD_DIR": str(record_dir),
            "EXECUTOR_CONCURRENCY": str(config.concurrency),
            "EXECUTOR_LEASE_SECONDS": str(config.lease_seconds),
            "EXECUTOR_HEARTBEAT_INTERVAL_SECONDS": str(max(0.2, config.lease_seconds / 5)),
            "EXECUTOR_SHUTDOWN_GRACE_SECONDS": "5",
            "RETRY_BACKOFF_BASE_SECONDS": "0.5",
            "RETRY_BACKOFF_CAP_SECONDS": "5",
        }
        self.producer = Producer(cluster.target, self.run_id, config.rate)
        self.result = SoakResult(
            config=asdict(config),
            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            git_commit=_git_commit(),
            database=cluster.database_url.rsplit("/", 1)[-1],
        )
        [(version, autovacuum, fsync)] = cluster.execute(
            "SELECT current_setting('server_version'), current_setting('autovacuum'), current_setting('fsync')"
        )
        self.result.server = {"version": version, "autovacuum": autovacuum, "fsync": fsync}
        if autovacuum != "on":
            self.say(
                "note: autovacuum is off on this server, so dead row versions are never cleaned up during the "
                "soak (--private-server runs one with the defaults)"
            )
        self._last_sample = 0.0
        self._last_counts: dict[str, int] = {}
        self._last_submitted = 0
        self._last_db_time: datetime | None = None

    # -- processes ------------------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.began

    def say(self, message: str) -> None:
        if self.config.verbose:
            print(f"[{self.now():7.1f} s] {message}", flush=True)

    def start_executor(self, wait: bool = False) -> Process:
        """A new executor; with ``wait``, once it serves its metrics port (imports done, about to lease)."""
        self.executor_count += 1
        port = free_port()
        env = {**self.executor_env, "METRICS_PORT": str(port)}
        service = ServiceProcess("services.executor", env, log_dir=self.log_dir).start()
        if wait:
            service.wait_for_port(port, START_TIMEOUT_SECONDS)
        process = Process(f"executor-{self.executor_count}", service, self.now())
        self.processes.append(process)
        return process

    def live_executors(self) -> list[Process]:
        return [p for p in self.processes if p.name.startswith("executor-") and p.ended is None]

    def kill_one_executor(self) -> None:
        victim = self.random.choice(self.live_executors())
        victim.service.kill()
        victim.ended, victim.killed = self.now(), True
        replacement = self.start_executor()
        self.result.kills.append(
            {
                "at_seconds": round(victim.ended, 1),
                "killed": victim.name,
                "pid": victim.service.pid,
                "replacement": replacement.name,
            }
        )
        self.say(f"SIGKILL {victim.name} (pid {victim.service.pid}); started {replacement.name}")

    def check_alive(self) -> None:
        for process in self.processes:
            if process.ended is None and not process.service.alive():
                process.ended = self.now()
                problem = f"{process.name} exited by itself at {process.ended:.0f} s (see {process.service.log_path})"
                self.result.problems.append(problem)
                self.say(problem)

    # -- sampling ---------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        rows = self.cluster.execute("SELECT status::text, count(*) FROM jobs GROUP BY 1")
        found = {status: int(n) for status, n in rows}
        return {status: found.get(status, 0) for status in (*ACTIVE, "COMPLETED", "FAILED", "CANCELLED")}

    def sample(self) -> None:
        now = self.now()
        elapsed = now - self._last_sample
        counts = self.counts()
        submitted = self.producer.submitted()
        [(db_time,)] = self.cluster.execute("SELECT clock_timestamp()")
        latency: list[Any] = [None, None, None]
        if self._last_db_time is not None:
            # Submit-to-start of the first attempts of unscheduled jobs that finished in the interval.
            [row] = self.cluster.execute(
                "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY s), "
                "percentile_cont(0.99) WITHIN GROUP (ORDER BY s) FROM ("
                "  SELECT extract(epoch FROM started_at - created_at) AS s FROM jobs"
                "  WHERE status = 'COMPLETED' AND finished_at >= %s AND finished_at < %s"
                "    AND attempts = 1 AND scheduled_at IS NULL) AS q",
                (self._last_db_time, db_time),
            )
            latency = list(row)
        [(dead, table_mb)] = self.cluster.execute(
            "SELECT n_dead_tup, pg_total_relation_size('jobs') / 1048576.0 FROM pg_stat_user_tables "
            "WHERE relname = 'jobs'"
        )
        memory: dict[str, float] = {}
        cores: dict[str, float] = {}
        for process in self.processes:
            if process.ended is not None:
                continue
            memory[process.name] = round(rss_mb(process.service.pid), 1)
            process.rss_mb.append(memory[process.name])
            cpu = cpu_seconds(process.service.pid)
            cores[process.name] = round((cpu - process.cpu_at_last_sample) / elapsed, 2) if elapsed > 0 else 0.0
            process.cpu_at_last_sample = cpu
        finished = sum(counts[s] for s in ("COMPLETED", "FAILED", "CANCELLED"))
        last_finished = sum(self._last_counts.get(s, 0) for s in ("COMPLETED", "FAILED", "CANCELLED"))
        interval = {
            "at_seconds": round(now, 1),
            "submitted_per_second": round((submitted - self._last_submitted) / elapsed, 1) if elapsed else 0.0,
            "finished_per_second": round((finished - last_finished) / elapsed, 1) if elapsed else 0.0,
            "submitted": submitted,
            "finished": finished,
            "backlog": sum(counts[s] for s in ACTIVE),
            "counts": counts,
            "latency_jobs": int(latency[0] or 0),
            "latency_p50_ms": round(float(latency[1]) * 1000, 1) if latency[1] is not None else None,
            "latency_p99_ms": round(float(latency[2]) * 1000, 1) if latency[2] is not None else None,
            "dead_tuples": int(dead or 0),
            "table_mb": round(float(table_mb), 1),
            "rss_mb": memory,
            "cpu_cores": cores,
        }
        self.result.intervals.append(interval)
        self._last_sample, self._last_counts, self._last_submitted, self._last_db_time = now, counts, submitted, db_time
        if self.config.verbose:
            executors = sum(v for k, v in memory.items() if k.startswith("executor-"))
            print(
                f"[{now:7.1f} s] submitted {interval['submitted_per_second']:7.1f}/s  finished "
                f"{interval['finished_per_second']:7.1f}/s  backlog {interval['backlog']:6d}  p50 "
                f"{interval['latency_p50_ms'] or 0:6.1f} ms  p99 {interval['latency_p99_ms'] or 0:7.1f} ms  "
                f"RSS MB api {memory.get('api', 0):.0f} scheduler {memory.get('scheduler', 0):.0f} "
                f"executors {executors:.0f} ({len(self.live_executors())})",
                flush=True,
            )

    # -- the run ------------------------------------------------------------------------------------------

    def run(self) -> SoakResult:
        config = self.config
        for _ in range(config.executors):
            self.start_executor(wait=True)
        self.sample()
        self.producer.start()
        self.say(
            f"load: {config.rate:g} jobs/s for {config.minutes:g} min; {config.executors} executors x "
            f"{config.concurrency}; a SIGKILL every {config.kill_min_seconds:g}-{config.kill_max_seconds:g} s"
        )
        end = self.now() + config.minutes * 60
        self.result.load_began_seconds = round(self.now(), 1)
        next_kill = self.now() + self.random.uniform(config.kill_min_seconds, config.kill_max_seconds)
        next_sample = self.now() + config.sample_seconds
        try:
            while self.now() < end and not self.producer.failure:
                if self.now() >= next_kill and self.live_executors():
                    self.kill_one_executor()
                    next_kill = self.now() + self.random.uniform(config.kill_min_seconds, config.kill_max_seconds)
                if self.now() >= next_sample:
                    self.check_alive()
                    self.sample()
                    next_sample += config.sample_seconds
                time.sleep(0.05)
        except KeyboardInterrupt:
            self.result.interrupted = True
            self.say("interrupted: stopping the load, then the accounting")
        self.producer.stop()
        self.result.load_ended_seconds = round(self.now(), 1)
        self.producer.join(180)
        if self.producer.failure:
            self.result.problems.append(f"producer: {self.producer.failure}")
        self.drain()
        self.check_alive()
        self.sample()
        self.result.seconds = round(self.now(), 1)
        self.account()
        self.summarise_processes()
        return self.result

    def drain(self) -> None:
        self.say(f"load stopped; waiting up to {self.config.drain_timeout:g} s for the backlog to finish")
        deadline = time.monotonic() + self.config.drain_timeout
        next_sample = self.now() + self.config.sample_seconds
        try:
            while sum(self.counts()[s] for s in ACTIVE) > 0:
                if time.monotonic() > deadline:
                    self.result.problems.append(
                        f"jobs still active {self.config.drain_timeout:g} s after the load stopped"
                    )
                    return
                self.check_alive()
                if not self.live_executors():
                    self.result.problems.append("no executor left to finish the backlog")
                    return
                if self.now() >= next_sample:
                    self.sample()
                    next_sample += self.config.sample_seconds
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.result.interrupted = True
            self.result.problems.append("interrupted while the backlog drained")

    def account(self) -> None:
        accepted = self.producer.accepted
        rows = self.cluster.execute("SELECT job_id, status::text FROM jobs")
        status_of = {int(job_id): status for job_id, status in rows}
        by_status = Counter(status_of.values())
        submitted = len(accepted.kinds)
        finished = {s: by_status.get(s, 0) for s in ("COMPLETED", "FAILED", "CANCELLED")}
        lost = [job_id for job_id in accepted.kinds if job_id not in status_of]
        unknown = [job_id for job_id in status_of if job_id not in accepted.kinds]
        unexpected = Counter(
            f"{kind} ended {status_of.get(job_id)} (expected {EXPECTED[kind]})"
            for job_id, kind in accepted.kinds.items()
            if status_of.get(job_id) != EXPECTED[kind]
        )
        self.result.accounting = {
            "submitted": submitted,
            **{status.lower(): n for status, n in finished.items()},
            "still_active": sum(by_status.get(s, 0) for s in ACTIVE),
            "difference": submitted - sum(finished.values()),
            "rows_in_table": len(status_of),
            "lost": len(lost),
            "never_acknowledged": len(unknown),
            "by_kind": dict(Counter(accepted.kinds.values())),
            "unexpected_outcomes": dict(unexpected),
            "submit_calls": accepted.calls,
            "created_by_retried_calls": submitted - accepted.created,
            "client_errors": dict(accepted.errors),
            "cancels": accepted.cancels_done,
        }
        if submitted != sum(finished.values()):
            self.result.problems.append(
                f"submitted {submitted} != completed + failed + cancelled {sum(finished.values())}"
            )
        if lost:
            self.result.problems.append(f"{len(lost)} accepted jobs are not in the table: {lost[:10]}")
        if unknown:
            self.result.problems.append(f"{len(unknown)} jobs in the table were never acknowledged: {unknown[:10]}")
        if unexpected:
            self.result.problems.append(f"jobs that ended otherwise than expected: {dict(unexpected)}")
        self.account_executions()

    def account_executions(self) -> None:
        """Jobs the tests.record handler ran more than once, and whether a killed executor explains each."""
        killed_pids = {p.service.pid for p in self.processes if p.killed}
        runs: dict[int, Counter[bool]] = {}
        for path in self.record_dir.glob("*.log"):
            pid = int(path.stem)
            for line in path.read_text().splitlines():
                if line.strip():
                    runs.setdefault(int(line.split()[0]), Counter())[pid in killed_pids] += 1
        repeated = {job: c for job, c in runs.items() if c.total() > 1}
        unexplained = [job for job, c in runs.items() if c[False] > 1]
        self.result.duplicates = {
            "record_jobs_run": len(runs),
            "ran_more_than_once": len(repeated),
            "extra_executions": sum(c.total() - 1 for c in repeated.values()),
            "unexplained_by_a_kill": len(unexplained),
        }
        if unexplained:
            self.result.problems.append(
                f"{len(unexplained)} jobs ran twice on executors that were not killed: {unexplained[:10]}"
            )

    def summarise_processes(self) -> None:
        for process in self.processes:
            samples = process.rss_mb or [0.0]
            self.result.processes[process.name] = {
                "pid": process.service.pid,
                "started_at_seconds": round(process.started, 1),
                "ended_at_seconds": None if process.ended is None else round(process.ended, 1),
                "killed": process.killed,
                "rss_mb_first": samples[0],
                "rss_mb_max": max(samples),
                "rss_mb_last": samples[-1],
            }


def run_soak(config: SoakConfig) -> tuple[SoakResult, Path]:
    """Start the stack on a fresh database, soak it, stop everything; the result and the logs folder."""
    _stop_on_sigterm()
    log_dir = Path(tempfile.mkdtemp(prefix="soak-logs-"))
    record_dir = log_dir / "records"
    record_dir.mkdir()
    soak: Soak | None = None
    private: PgInstance | None = None
    try:
        server_url = config.server_url
        if config.private_server:
            private = PgInstance(log_dir / "pg", database="postgres").start()
            server_url = private.admin_url
        ctx = BenchContext(server_url=server_url, log_dir=log_dir, verbose=config.verbose)
        with Cluster.start(ctx, "soak") as cluster:
            soak = Soak(config, cluster, log_dir, record_dir)
            try:
                return soak.run(), log_dir
            finally:
                for process in soak.live_executors():
                    process.service.stop(timeout=20)
                for process in soak.processes:
                    if process.name.startswith("executor-"):
                        process.service.stop(timeout=1)  # closes the log files of killed ones
    finally:
        if private is not None:
            private.destroy()
        keep = config.keep_logs or soak is None or not soak.result.ok
        if not keep:
            shutil.rmtree(log_dir, ignore_errors=True)
