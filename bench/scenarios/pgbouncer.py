"""8. pgbouncer: the drain of scenario 1, with the executors connecting directly and through PgBouncer.

One database, one api and scheduler (direct). Each of ``--runs`` rounds drains N jobs twice with the first
``--executors`` x ``--concurrency``: once with the executors connecting to the server directly (LISTEN
wake-ups), once through a PgBouncer in transaction pooling mode started by the scenario in front of the
same server (``DATABASE_POOLER=transaction``: no start-up options, poll only). The table shows both
medians and their ratio (target: through PgBouncer at least 70% of direct).

Needs Debian's ``pgbouncer`` (installed when missing, as root) and a server that trusts the user of
``--server-url`` (PgBouncer here authenticates nobody and logs in as that user without a password).
"""

from __future__ import annotations

from dataclasses import asdict
from urllib.parse import urlsplit

from bench.config import BenchConfig
from bench.harness import BenchContext, Cluster, truncate_jobs
from bench.report import ScenarioResult
from bench.scenarios.common import DrainRun, drain
from bench.stats import median
from tests.support.pgbouncer import PgBouncer

NAME = "pgbouncer"
DESCRIPTION = "the drain with executors direct, then through PgBouncer (transaction pooling), alternately: jobs/s"
TARGET_RATIO = 0.7
POOL_SIZE = 20  # PgBouncer's server connections to the database


def run(ctx: BenchContext, config: BenchConfig) -> ScenarioResult:
    result = ScenarioResult(NAME, DESCRIPTION)
    executors, concurrency = config.executors[0], config.concurrency[0]
    server = urlsplit(ctx.server_url)
    runs: dict[str, list[DrainRun]] = {"direct": [], "PgBouncer": []}
    with Cluster.start(ctx, NAME) as cluster:
        database = cluster.database_url.rsplit("/", 1)[-1]
        # Through a pooler no start-up options are sent: the database gives its sessions what they would set.
        cluster.execute(f"ALTER DATABASE \"{database}\" SET timezone = 'UTC'")
        cluster.execute(f"ALTER DATABASE \"{database}\" SET statement_timeout = '30s'")
        with PgBouncer(
            server.port or 5432, "transaction", POOL_SIZE, target_host=server.hostname or "127.0.0.1"
        ) as bouncer:
            url = bouncer.url(database)
            if server.username:
                url = url.replace("postgres@", f"{server.username}@", 1)
            pooled = {"DATABASE_URL": url, "DATABASE_POOLER": "transaction"}
            for number in range(config.runs):
                for mode, env in (("direct", None), ("PgBouncer", pooled)):
                    ctx.say(f"pgbouncer: run {number + 1}, {mode}")
                    truncate_jobs(cluster.conn)
                    runs[mode].append(
                        drain(
                            cluster,
                            config.drain_jobs,
                            executors,
                            concurrency,
                            config.prefill_callers,
                            config.drain_timeout,
                            env,
                        )
                    )
    speeds = {mode: median([r.jobs_per_second for r in mode_runs]) for mode, mode_runs in runs.items()}
    label = f"E={executors} C={concurrency}"
    for mode, speed in speeds.items():
        incomplete = sum(1 for r in runs[mode] if not r.all_completed)
        result.add(
            f"{label} {mode}: jobs/s",
            speed,
            "jobs/s",
            note=f"median of {len(runs[mode])}; N={config.drain_jobs}"
            + (f"; {incomplete} runs INCOMPLETE" if incomplete else ""),
        )
    ratio = speeds["PgBouncer"] / speeds["direct"] if speeds["direct"] else float("nan")
    result.add(f"{label}: PgBouncer / direct", ratio, "ratio", f">= {TARGET_RATIO}", note="same runs, alternating")
    result.details = {
        "jobs": config.drain_jobs,
        "pool_size": POOL_SIZE,
        "ratio": ratio,
        **{
            mode: [{**asdict(r), "jobs_per_second": r.jobs_per_second} for r in mode_runs]
            for mode, mode_runs in runs.items()
        },
    }
    return result
