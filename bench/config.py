"""Every parameter of every scenario, with defaults that finish in a few minutes, and ``--quick`` ones."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

__all__ = ["QUICK", "BenchConfig"]


@dataclass(frozen=True)
class BenchConfig:
    # Executors (drain, sustained, submit-to-start). drain runs every combination of these lists.
    executors: tuple[int, ...] = (2,)
    concurrency: tuple[int, ...] = (100,)
    runs: int = 3  # repeats of the cheap measurements; the table shows the median

    # 1. drain
    drain_jobs: int = 50_000
    prefill_callers: int = 2  # SubmitJobs processes that fill the queue before the executors start
    drain_timeout: float = 600.0
    # Also drain with the executors' own defaults (no EXECUTOR_CONCURRENCY): what an executor started
    # without flags does.
    drain_default: bool = True
    # Each value: the drain's jobs spread round-robin over this many fairness keys (0: no key), with
    # every --executors and --concurrency value (docs/fairness.md).
    drain_keys: tuple[int, ...] = (0, 100)

    # 2. sustained
    sustained_seconds: float = 20.0
    sustained_rate: float = 5_000.0  # jobs/s offered by all producers together; 0 = as fast as they can
    sustained_producers: int = 2
    sustained_batch: int = 100

    # 3. unary SubmitJob
    unary_seconds: float = 10.0
    unary_concurrency: int = 32
    unary_clients: int = 1  # processes sharing unary_concurrency
    channels: int = 1  # gRPC connections per unary or batch client process (calls round-robin over them)
    unary_rate: float = 1_000.0  # the fixed-rate run's offered RPCs/s; 0 skips it
    warmup_seconds: float = 1.0

    # 4. batch SubmitJobs
    batch_seconds: float = 10.0
    batch_size: int = 1_000
    batch_callers: int = 2  # processes
    batch_in_flight: int = 1  # calls outstanding per process

    # 5. submit-to-start latency
    latency_rate: float = 500.0
    latency_seconds: float = 10.0

    # 6. big table
    big_rows: int = 1_000_000
    big_lease_jobs: int = 5_000  # READY jobs leased and completed by SQL per phase
    big_lease_batch: int = 100
    big_drain_jobs: int = 5_000  # drained by one executor per phase
    big_seconds: float = 5.0  # per latency measurement (submit, GetStats)
    big_submit_concurrency: int = 1

    # 9. bulk actions
    bulk_jobs: int = 100_000  # jobs CancelJobs and then RetryJobs change
    bulk_drain_jobs: int = 100_000  # echo jobs queued before each call, for the executors to drain meanwhile

    # 10. crash
    crash_rounds: int = 5  # SIGKILLs, one per round

    scenarios: tuple[str, ...] = field(default=())

    def with_overrides(self, **overrides: object) -> BenchConfig:
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items() if k in known and v is not None})  # type: ignore[arg-type]


# A smoke run: every scenario in seconds; the numbers mean little.
QUICK = dict(
    executors=(1,),
    runs=1,
    drain_jobs=2_000,
    prefill_callers=1,
    drain_timeout=120.0,
    sustained_seconds=3.0,
    sustained_rate=1_000.0,
    sustained_producers=1,
    unary_seconds=2.0,
    warmup_seconds=0.5,
    batch_seconds=2.0,
    batch_callers=1,
    latency_rate=200.0,
    latency_seconds=2.0,
    unary_rate=500.0,
    big_rows=20_000,
    big_lease_jobs=1_000,
    big_drain_jobs=1_000,
    big_seconds=1.0,
    bulk_jobs=2_000,
    bulk_drain_jobs=1_000,
    crash_rounds=1,
)
