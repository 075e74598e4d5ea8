"""``python -m soak``: parse the flags, run the soak, print the report, write the JSON to .soak/."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import DEFAULT_SERVER_URL, ROOT
from soak.run import SoakConfig, SoakResult, run_soak

__all__ = ["build_parser", "format_report", "main"]


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number above 0")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(
        prog="python -m soak",
        description="Soak the job service: api, scheduler and executors on a fresh database (created on "
        "--server-url, dropped afterwards) under a steady load of keyed jobs, with one executor killed "
        "(SIGKILL) and replaced every --kill-min to --kill-max seconds. Prints throughput, latency and "
        "memory per interval and the final accounting; writes JSON to .soak/. Exit status 1 when a job "
        "was lost, ended otherwise than expected, or a process died by itself. See docs/reliability.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--minutes", type=_positive, default=defaults.minutes, help="how long the load runs")
    parser.add_argument("--rate", type=_positive, default=defaults.rate, help="jobs/s offered")
    parser.add_argument("--executors", type=_count, default=defaults.executors, help="executor processes")
    parser.add_argument("--concurrency", type=_count, default=defaults.concurrency, help="jobs at once per executor")
    parser.add_argument("--kill-min", type=_positive, default=defaults.kill_min_seconds, help="seconds between kills")
    parser.add_argument("--kill-max", type=_positive, default=defaults.kill_max_seconds, help="seconds between kills")
    parser.add_argument("--sample", type=_positive, default=defaults.sample_seconds, help="seconds per interval")
    parser.add_argument(
        "--lease-seconds", type=_positive, default=defaults.lease_seconds, help="the executors' EXECUTOR_LEASE_SECONDS"
    )
    parser.add_argument(
        "--drain-timeout", type=_positive, default=defaults.drain_timeout, help="seconds for the backlog at the end"
    )
    parser.add_argument("--seed", type=int, help="seed of the kill schedule (random when unset)")
    parser.add_argument(
        "--server-url",
        default=os.environ.get("SOAK_DATABASE_URL") or DEFAULT_SERVER_URL,
        help="PostgreSQL server where a fresh database may be created and dropped (env SOAK_DATABASE_URL)",
    )
    parser.add_argument(
        "--private-server",
        action="store_true",
        help="run a PostgreSQL of the soak's own (pgserver's PostgreSQL 16, autovacuum on) instead of --server-url",
    )
    parser.add_argument("--output", type=Path, help="JSON file to write (default .soak/<timestamp>.json)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs (kept anyway on failure)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines, only the report")
    return parser


def format_report(result: SoakResult) -> str:
    config = result.config
    accounting = result.accounting
    lines = [
        "",
        f"soak {result.started_at} (commit {result.git_commit}): {result.seconds / 60:.1f} min in all, "
        f"{config['rate']:g} jobs/s offered for {config['minutes']:g} min, {config['executors']} executors x "
        f"{config['concurrency']}, {len(result.kills)} executors killed (SIGKILL) and replaced"
        + (" [interrupted]" if result.interrupted else ""),
        f"PostgreSQL {result.server.get('version', '?')}, autovacuum {result.server.get('autovacuum', '?')}, "
        f"fsync {result.server.get('fsync', '?')}",
    ]
    loaded = [
        i for i in result.intervals if result.load_began_seconds < i["at_seconds"] <= result.load_ended_seconds + 0.5
    ]
    if loaded:
        finished = [i["finished_per_second"] for i in loaded]
        p99 = [i["latency_p99_ms"] for i in loaded if i["latency_p99_ms"] is not None]
        p50 = [i["latency_p50_ms"] for i in loaded if i["latency_p50_ms"] is not None]
        lines.append(
            f"throughput per {config['sample_seconds']:g} s interval under load: finished median "
            f"{statistics.median(finished):.1f} jobs/s (min {min(finished):.1f}, max {max(finished):.1f}); "
            f"backlog at most {max(i['backlog'] for i in loaded)}"
        )
        if p50:
            lines.append(
                f"submit-to-start (first attempts): p50 median {statistics.median(p50):.1f} ms, "
                f"p99 median {statistics.median(p99):.1f} ms, worst interval p99 {max(p99):.1f} ms"
            )
    if result.intervals:
        last = result.intervals[-1]
        lines.append(f"jobs table at the end: {last['table_mb']:.1f} MiB, {last['dead_tuples']:,} dead row versions")
    if accounting:
        lines.append(
            f"accounting: submitted {accounting['submitted']:,} = completed {accounting['completed']:,} + failed "
            f"{accounting['failed']:,} + cancelled {accounting['cancelled']:,}; difference "
            f"{accounting['difference']}, still active {accounting['still_active']}, lost {accounting['lost']}, "
            f"unexpected outcomes {sum(accounting['unexpected_outcomes'].values())}"
        )
        lines.append(
            f"  by kind {accounting['by_kind']}; client errors retried {accounting['client_errors'] or 'none'}"
        )
    if result.duplicates:
        d = result.duplicates
        lines.append(
            f"executions (tests.record jobs): {d['record_jobs_run']:,} jobs ran, {d['ran_more_than_once']} more than "
            f"once ({d['extra_executions']} extra executions), {d['unexplained_by_a_kill']} not explained by a kill"
        )
    lines.append("memory (RSS MiB first -> max -> last):")
    for name, process in result.processes.items():
        life = "killed" if process["killed"] else ("running" if process["ended_at_seconds"] is None else "exited")
        lines.append(
            f"  {name:<12} {process['rss_mb_first']:7.1f} -> {process['rss_mb_max']:7.1f} -> "
            f"{process['rss_mb_last']:7.1f}   ({life}, {process['started_at_seconds']:.0f}-"
            f"{process['ended_at_seconds'] if process['ended_at_seconds'] is not None else result.seconds:.0f} s)"
        )
    lines.append("result: OK" if result.ok else "result: FAILED\n  " + "\n  ".join(result.problems))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.kill_max < args.kill_min:
        print("--kill-max must be at least --kill-min", file=sys.stderr)
        return 2
    config = SoakConfig(
        minutes=args.minutes,
        rate=args.rate,
        executors=args.executors,
        concurrency=args.concurrency,
        kill_min_seconds=args.kill_min,
        kill_max_seconds=args.kill_max,
        sample_seconds=args.sample,
        lease_seconds=args.lease_seconds,
        drain_timeout=args.drain_timeout,
        seed=args.seed if args.seed is not None else int(time.time()),
        server_url=args.server_url,
        private_server=args.private_server,
        keep_logs=args.keep_logs,
        verbose=not args.quiet,
    )
    output = args.output or ROOT / ".soak" / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    try:
        result, log_dir = run_soak(config)
    except KeyboardInterrupt:
        print("interrupted before the soak could finish; the services were stopped", file=sys.stderr)
        return 130
    print(format_report(result))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    print(f"written {output}")
    if log_dir.exists():
        print(f"services' logs kept in {log_dir}")
    return 0 if result.ok else 1
