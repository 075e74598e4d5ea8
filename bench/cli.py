"""``python -m bench``: parse the flags, run the chosen scenarios, print the table, write the JSON."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.config import QUICK, BenchConfig
from bench.harness import DEFAULT_SERVER_URL, ROOT, BenchContext, busy_fraction, connect, system_cpu_ticks
from bench.report import ScenarioResult, environment, format_markdown, format_table, to_json, write_json
from bench.scenarios import SCENARIOS

__all__ = ["build_parser", "main"]


def _ints(text: str, least: int = 1) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None
    if not values or min(values) < least:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers >= {least}")
    return values


def _counts(text: str) -> tuple[int, ...]:
    return _ints(text, least=0)


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the job service: each scenario starts the api, the scheduler and executors against a "
        "fresh database (created on --server-url, dropped afterwards), drives them from separate load-generator "
        "processes, prints a table and writes JSON to .bench/<timestamp>.json. See docs/benchmarks.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    names = ",".join(SCENARIOS)
    parser.add_argument("--scenarios", default=names, help=f"comma-separated, from: {names}")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of seconds per scenario (small N, short runs)"
    )
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_DATABASE_URL") or DEFAULT_SERVER_URL,
        help="PostgreSQL server where fresh databases may be created and dropped (env BENCH_DATABASE_URL)",
    )
    parser.add_argument("--output", type=Path, help="JSON file to write (default .bench/<timestamp>.json)")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument("-v", "--verbose", action="store_true", help="print progress")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs (printed path)")
    parser.add_argument(
        "--runs", type=int, default=defaults.runs, help="repeats of drain, unary, batch and rest (median)"
    )

    group = parser.add_argument_group("executors (drain, sustained, latency, bigtable)")
    group.add_argument(
        "--executors",
        "-E",
        type=_ints,
        default=defaults.executors,
        help="executor processes; drain runs each value of a comma-separated list",
    )
    group.add_argument(
        "--concurrency",
        "-C",
        type=_ints,
        default=defaults.concurrency,
        help="EXECUTOR_CONCURRENCY per executor; drain runs each value of a list",
    )
    group.add_argument(
        "--service-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every service process (repeatable)",
    )
    group.add_argument(
        "--api-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the api (e.g. DB_POOL_SIZE=20)",
    )
    group.add_argument(
        "--executor-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for executors (e.g. EXECUTOR_COMPLETE_FLUSH_SECONDS=0.002)",
    )

    group = parser.add_argument_group("1. drain")
    group.add_argument("--drain-jobs", "-N", type=int, default=defaults.drain_jobs, help="N jobs per run")
    group.add_argument(
        "--prefill-callers", type=int, default=defaults.prefill_callers, help="SubmitJobs processes filling the queue"
    )
    group.add_argument(
        "--drain-default",
        action=argparse.BooleanOptionalAction,
        default=defaults.drain_default,
        help="also drain with the executors' default concurrency (started without flags)",
    )
    group.add_argument(
        "--drain-keys",
        type=_counts,
        default=defaults.drain_keys,
        help="fairness keys the jobs are spread over, 0 for none; drain runs each value of a list",
    )

    group = parser.add_argument_group("2. sustained")
    group.add_argument("--sustained-seconds", type=float, default=defaults.sustained_seconds)
    group.add_argument(
        "--sustained-rate",
        type=float,
        default=defaults.sustained_rate,
        help="jobs/s offered by all producers; 0 = as fast as they can",
    )
    group.add_argument("--sustained-producers", type=int, default=defaults.sustained_producers)
    group.add_argument("--sustained-batch", type=int, default=defaults.sustained_batch, help="jobs per SubmitJobs")

    group = parser.add_argument_group("3. unary SubmitJob, and the calls of 7. rest")
    group.add_argument("--unary-seconds", type=float, default=defaults.unary_seconds)
    group.add_argument("--unary-concurrency", type=int, default=defaults.unary_concurrency)
    group.add_argument(
        "--unary-clients", type=int, default=defaults.unary_clients, help="client processes sharing the concurrency"
    )
    group.add_argument(
        "--channels",
        type=int,
        default=defaults.channels,
        help="gRPC connections per unary or batch client process; SO_REUSEPORT spreads connections, not calls, "
        "over several api processes (API_PROCESSES)",
    )
    group.add_argument(
        "--unary-rate", type=float, default=defaults.unary_rate, help="offered RPCs/s of the fixed-rate run; 0 skips it"
    )
    group.add_argument(
        "--warmup-seconds",
        type=float,
        default=defaults.warmup_seconds,
        help="load before measuring starts (unary, batch, latency)",
    )

    group = parser.add_argument_group("4. batch SubmitJobs")
    group.add_argument("--batch-seconds", type=float, default=defaults.batch_seconds)
    group.add_argument("--batch-size", type=int, default=defaults.batch_size)
    group.add_argument("--batch-callers", type=int, default=defaults.batch_callers, help="client processes")
    group.add_argument("--batch-in-flight", type=int, default=defaults.batch_in_flight, help="calls per process")

    group = parser.add_argument_group("5. submit-to-start latency")
    group.add_argument("--latency-rate", type=float, default=defaults.latency_rate, help="SubmitJob/s offered")
    group.add_argument("--latency-seconds", type=float, default=defaults.latency_seconds)

    group = parser.add_argument_group("6. big table")
    group.add_argument("--big-rows", type=int, default=defaults.big_rows, help="finished rows inserted")
    group.add_argument(
        "--big-lease-jobs", type=int, default=defaults.big_lease_jobs, help="jobs leased and completed by SQL per phase"
    )
    group.add_argument("--big-lease-batch", type=int, default=defaults.big_lease_batch)
    group.add_argument(
        "--big-drain-jobs", type=int, default=defaults.big_drain_jobs, help="jobs drained by one executor per phase"
    )
    group.add_argument(
        "--big-seconds", type=float, default=defaults.big_seconds, help="seconds per latency measurement"
    )
    group.add_argument("--big-submit-concurrency", type=int, default=defaults.big_submit_concurrency)

    group = parser.add_argument_group("9. bulk")
    group.add_argument("--bulk-jobs", type=int, default=defaults.bulk_jobs, help="jobs CancelJobs and RetryJobs change")
    group.add_argument(
        "--bulk-drain-jobs",
        type=int,
        default=defaults.bulk_drain_jobs,
        help="echo jobs queued before each call, drained meanwhile",
    )

    group = parser.add_argument_group("10. crash")
    group.add_argument(
        "--crash-rounds", type=int, default=defaults.crash_rounds, help="executors killed, one per round"
    )
    return parser


def config_from(argv: Sequence[str] | None, args: argparse.Namespace) -> BenchConfig:
    """Defaults, then --quick's, then every flag given on the command line (even if equal to a default)."""
    config = BenchConfig()
    if args.quick:
        config = config.with_overrides(**QUICK)
    given_only = build_parser()
    for action in given_only._actions:
        action.default = argparse.SUPPRESS
    explicit = vars(given_only.parse_args(argv))
    return config.with_overrides(**explicit)


def _server_version(server_url: str) -> str:
    try:
        conn = connect(server_url)
    except Exception as error:
        raise SystemExit(f"bench: cannot connect to {server_url}: {str(error).strip()}") from None
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            version = str(cur.fetchone()[0])
            cur.execute("SHOW synchronous_commit")
            return f"{version} (synchronous_commit={cur.fetchone()[0]})"
    finally:
        conn.close()


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C: services stopped, databases dropped."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown or not chosen:
        parser.error(f"unknown scenario(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SCENARIOS)}")
    config = config_from(argv, args).with_overrides(scenarios=tuple(chosen))

    server_version = _server_version(args.server_url)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    output = args.output or ROOT / ".bench" / f"{stamp}.json"
    log_dir = Path(tempfile.mkdtemp(prefix=f"jobs-bench-{stamp}-"))
    ctx = BenchContext(
        server_url=args.server_url,
        log_dir=log_dir,
        service_env=dict(args.service_env),
        api_env=dict(args.api_env),
        executor_env=dict(args.executor_env),
        verbose=args.verbose,
    )
    meta: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "environment_before": environment(server_version),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()},
        "service_env": ctx.service_env,
        "api_env": ctx.api_env,
        "executor_env": ctx.executor_env,
    }
    print(
        f"bench: {', '.join(chosen)}{' (quick)' if args.quick else ''}; PostgreSQL {server_version}; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    results: list[ScenarioResult] = []
    interrupted = False
    for name in chosen:
        module = SCENARIOS[name]
        print(f"-- {name}: {module.DESCRIPTION}", flush=True)
        began = time.monotonic()
        load_before = os.getloadavg()[0]
        ticks_before = system_cpu_ticks()
        try:
            result: ScenarioResult = module.run(ctx, config)
        except KeyboardInterrupt:
            # The scenario's context managers have stopped its processes and dropped its database.
            print(f"   {name}: interrupted; the scenarios finished so far are reported", flush=True)
            interrupted = True
            break
        except Exception:
            result = ScenarioResult(name, module.DESCRIPTION, error=traceback.format_exc())
            print(result.error, file=sys.stderr, flush=True)
        result.seconds = round(time.monotonic() - began, 1)
        result.details["machine"] = {
            "loadavg_1min_before": load_before,
            "loadavg_1min_after": os.getloadavg()[0],
            # All CPUs, every process (the services, the clients, PostgreSQL, and anyone else's work).
            "cpu_busy_fraction": round(busy_fraction(ticks_before, system_cpu_ticks()), 3),
        }
        results.append(result)
        busy = result.details["machine"]["cpu_busy_fraction"]
        print(f"   {name}: {result.seconds:.0f} s, CPUs {busy:.0%} busy{' FAILED' if result.error else ''}", flush=True)

    meta["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta["interrupted"] = interrupted
    meta["environment_after"] = {"loadavg": list(os.getloadavg())}
    write_json(output, to_json(results, meta))
    print()
    print(format_table(results))
    if args.markdown:
        print()
        print(format_markdown(results))
    print(f"\nJSON: {output}")
    if args.keep_logs:
        print(f"service logs: {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    if interrupted:
        return 130
    return 1 if any(result.error for result in results) else 0
