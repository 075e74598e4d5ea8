"""Load generators: gRPC and HTTP clients that run in processes of their own, started together.

The machine has two cores and Python has a GIL, so a client must not share an interpreter with the
api it measures, nor with the other clients. :func:`run_workers` spawns one process per
:class:`LoadSpec`; every worker connects first (the channel is ready before the clock starts), then
all of them are released at the same instant, run their load, and send their measurements back.

Three kinds of load:

- ``batch``: SubmitJobs calls of ``batch_size`` jobs, ``in_flight`` at a time, optionally paced to
  ``rate`` jobs/s, for ``duration`` seconds or until ``total_jobs`` were accepted.
- ``unary``: SubmitJob calls. Closed loop (``rate`` None): ``concurrency`` callers, each sending its
  next call when the previous one returns. Open loop (``rate`` set): calls are sent on a fixed
  schedule whether or not earlier ones returned, and latency is counted from the scheduled send time,
  so a stall shows up in the percentiles instead of silently lowering the offered rate.
- ``stats``: GetStats calls, closed loop like ``unary``.
- ``rest_submit``, ``rest_get``, ``health``: ``POST /jobs``, ``GET /jobs/{id}`` (of a job the worker
  submits first) and ``GET /health`` over HTTP/1.1 keep-alive connections, closed or open loop like
  ``unary``. The client is a few lines over asyncio streams with its requests built once (no HTTP
  library), so that it costs a fraction of what the api spends on each call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from typing import Any, Literal

__all__ = ["LoadResult", "LoadSpec", "WorkerGroup", "merge", "run_workers"]

Kind = Literal["batch", "unary", "stats", "rest_submit", "rest_get", "health"]
HTTP_KINDS = ("rest_submit", "rest_get", "health")

# How long workers may take to start and connect before the group gives up.
READY_TIMEOUT_SECONDS = 60.0
# Most calls one open-loop worker keeps outstanding; beyond that a scheduled call is dropped (counted).
DEFAULT_MAX_IN_FLIGHT = 2000


@dataclass(frozen=True)
class LoadSpec:
    """What one worker process does."""

    target: str  # host:port of the api's gRPC server, or of its HTTP server for the HTTP kinds
    kind: Kind
    duration: float | None = None  # seconds of load after the start (and after the warm-up)
    warmup: float = 0.0  # seconds of load before measuring starts (not recorded)
    total_jobs: int | None = None  # batch: stop once this many jobs were accepted
    batch_size: int = 1000
    concurrency: int = 1  # closed loop: callers; batch: calls in flight
    rate: float | None = None  # open loop: calls/s (unary) or jobs/s (batch); None = as fast as possible
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    job_type: str = "echo"
    payload: dict[str, Any] = field(default_factory=dict)
    timeout: float = 30.0  # per call
    channels: int = 1  # gRPC connections; calls go round-robin over them
    fairness_keys: int = 0  # batch: the jobs of each call spread round-robin over this many keys (0: none)


@dataclass
class LoadResult:
    """What one worker (or, merged, a group of workers) measured. Latencies are in seconds."""

    calls: int = 0
    jobs: int = 0
    errors: int = 0
    dropped: int = 0
    elapsed: float = 0.0  # seconds of the measured window
    latencies: list[float] = field(default_factory=list)  # per call, from the actual send
    scheduled_latencies: list[float] = field(default_factory=list)  # open loop: from the scheduled send
    error_samples: list[str] = field(default_factory=list)
    began_at: float = 0.0  # wall clock (time.time()) when the (last) worker began its load
    cpu_seconds: float = 0.0  # CPU the load generators used while loading (are they the bottleneck?)
    wall_seconds: float = 0.0  # how long they loaded, warm-up included

    @property
    def client_cores(self) -> float:
        """The load generators' CPU use in cores (summed over the processes)."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.elapsed if self.elapsed > 0 else 0.0


def merge(results: Sequence[LoadResult]) -> LoadResult:
    """One result for workers that ran side by side over the same window (elapsed: the longest)."""
    merged = LoadResult()
    for result in results:
        merged.calls += result.calls
        merged.jobs += result.jobs
        merged.errors += result.errors
        merged.dropped += result.dropped
        merged.elapsed = max(merged.elapsed, result.elapsed)
        merged.latencies.extend(result.latencies)
        merged.scheduled_latencies.extend(result.scheduled_latencies)
        merged.error_samples.extend(result.error_samples[: max(0, 5 - len(merged.error_samples))])
        merged.began_at = max(merged.began_at, result.began_at)
        merged.cpu_seconds += result.cpu_seconds
        merged.wall_seconds = max(merged.wall_seconds, result.wall_seconds)
    return merged


class WorkerGroup:
    """Worker processes that are connected and waiting; :meth:`go` releases them all at once."""

    def __init__(self, specs: Sequence[LoadSpec]) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold gRPC state
        self._go: Event = context.Event()
        self._results: multiprocessing.Queue[tuple[int, str, Any]] = context.Queue()
        self._processes = [
            context.Process(target=_worker_main, args=(index, spec, self._go, self._results), daemon=True)
            for index, spec in enumerate(specs)
        ]
        self._specs = list(specs)
        self.started_at = 0.0

    def __enter__(self) -> WorkerGroup:
        try:
            for process in self._processes:
                process.start()
            ready: set[int] = set()
            deadline = time.monotonic() + READY_TIMEOUT_SECONDS
            while len(ready) < len(self._processes):
                index, kind, value = self._next(deadline, "load generators to connect")
                if kind == "error":
                    raise RuntimeError(f"load generator {index} failed to start:\n{value}")
                ready.add(index)
        except BaseException:
            self.__exit__()
            raise
        return self

    def go(self) -> float:
        """Release every worker; the wall-clock start time (``time.time()``)."""
        self.started_at = time.time()
        self._go.set()
        return self.started_at

    def results(self, timeout: float) -> LoadResult:
        """Wait up to ``timeout`` seconds for every worker's result; merged."""
        results: dict[int, LoadResult] = {}
        deadline = time.monotonic() + timeout
        while len(results) < len(self._processes):
            index, kind, value = self._next(deadline, "load generators to finish")
            if kind == "error":
                raise RuntimeError(f"load generator {index} failed:\n{value}")
            results[index] = value
        for process in self._processes:
            process.join(10)
        return merge(list(results.values()))

    def _next(self, deadline: float, what: str) -> tuple[int, str, Any]:
        while True:
            try:
                return self._results.get(timeout=0.2)
            except queue.Empty:
                dead = [p for p in self._processes if not p.is_alive() and p.exitcode not in (0, None)]
                if dead:
                    raise RuntimeError(f"a load generator died (exit code {dead[0].exitcode})") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"timed out waiting for {what}") from None

    def __exit__(self, *exc: object) -> None:
        for process in self._processes:
            if process.is_alive():
                process.terminate()
                process.join(5)
        self._results.close()


def run_workers(
    specs: Sequence[LoadSpec], timeout: float, on_start: Callable[[float], None] | None = None
) -> LoadResult:
    """Start the workers, release them together, and return their merged result."""
    with WorkerGroup(specs) as group:
        started = group.go()
        if on_start is not None:
            on_start(started)
        return group.results(timeout)


# ---------------------------------------------------------------------------------------------------
# Inside the worker process.


def _worker_main(index: int, spec: LoadSpec, go: Event, results: multiprocessing.Queue[tuple[int, str, Any]]) -> None:
    try:
        result = asyncio.run(_run(index, spec, go, results))
    except BaseException:
        results.put((index, "error", traceback.format_exc()))
        return
    results.put((index, "result", result))


async def _run(
    index: int, spec: LoadSpec, go: Event, results: multiprocessing.Queue[tuple[int, str, Any]]
) -> LoadResult:
    async with contextlib.AsyncExitStack() as stack:
        if spec.kind in HTTP_KINDS:
            call = await _http_caller(spec, stack)
        else:
            call = await _grpc_caller(spec, stack)
        results.put((index, "ready", None))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, go.wait)
        driver = _Driver(spec, call)
        if spec.rate is not None:
            return await driver.open_loop()
        return await driver.closed_loop()


async def _grpc_caller(spec: LoadSpec, channels: contextlib.AsyncExitStack) -> Callable[[int], Any]:
    import grpc

    from shared.proto.jobs.v1 import job_service_pb2 as pb
    from shared.proto.jobs.v1 import job_service_pb2_grpc as pb_grpc

    options = [
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ]
    stubs = []
    # A local subchannel pool per channel: otherwise channels of one process share one connection.
    own = [*options, ("grpc.use_local_subchannel_pool", 1)]
    for _ in range(max(1, spec.channels)):
        channel = await channels.enter_async_context(grpc.aio.insecure_channel(spec.target, options=own))
        await asyncio.wait_for(channel.channel_ready(), READY_TIMEOUT_SECONDS)
        stubs.append(pb_grpc.JobServiceStub(channel))
    next_stub = itertools.cycle(stubs).__next__
    job = pb.SubmitJobRequest(type=spec.job_type)
    job.payload.update(spec.payload)
    keyed = []
    for key in range(spec.fairness_keys):
        keyed.append(pb.SubmitJobRequest(fairness_key=f"tenant-{key}"))
        keyed[-1].MergeFrom(job)

    def batch(jobs: int) -> Any:
        return pb.SubmitJobsRequest(jobs=[keyed[i % len(keyed)] for i in range(jobs)] if keyed else [job] * jobs)

    # Requests are built once: the load generator should spend its CPU on sending, not on protobuf.
    batches: dict[int, Any] = {spec.batch_size: batch(spec.batch_size)}
    stats = pb.GetStatsRequest()

    def call(jobs: int) -> Any:
        if spec.kind == "batch":
            request = batches.get(jobs)
            if request is None:
                request = batches[jobs] = batch(jobs)
            return next_stub().SubmitJobs(request, timeout=spec.timeout)
        if spec.kind == "unary":
            return next_stub().SubmitJob(job, timeout=spec.timeout)
        return next_stub().GetStats(stats, timeout=spec.timeout)

    return call


class HttpError(Exception):
    pass


class _HttpPool:
    """Keep-alive HTTP/1.1 connections to one server: a call takes an idle one, or opens one."""

    def __init__(self, target: str, timeout: float) -> None:
        self.host, _, port = target.rpartition(":")
        self.port = int(port)
        self.timeout = timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    def message(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """A request, built once and sent as often as wanted."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is None:
            return (head + "\r\n").encode()
        return (head + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    async def connect(self, count: int) -> None:
        for _ in range(count):
            self.idle.append(await asyncio.open_connection(self.host, self.port))

    async def send(self, message: bytes) -> bytes:
        """The body of the reply to ``message``; HttpError for any status but 200."""
        connection = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        reader, writer = connection
        try:
            async with asyncio.timeout(self.timeout):
                writer.write(message)
                head = await reader.readuntil(b"\r\n\r\n")
                start = head.lower().index(b"\r\ncontent-length:") + 17
                body = await reader.readexactly(int(head[start : head.index(b"\r\n", start)]))
        except BaseException:
            writer.close()
            raise
        self.idle.append(connection)
        if head[9:12] != b"200":
            raise HttpError(f"{head[9:12].decode()}: {body[:200]!r}")
        return body

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def _http_caller(spec: LoadSpec, stack: contextlib.AsyncExitStack) -> Callable[[int], Any]:
    pool = _HttpPool(spec.target, spec.timeout)
    stack.callback(pool.close)
    await pool.connect(spec.concurrency)
    if spec.kind == "health":
        message = pool.message("GET", "/health")
    else:
        submit = pool.message("POST", "/jobs", json.dumps({"type": spec.job_type, "payload": spec.payload}).encode())
        message = submit
        if spec.kind == "rest_get":
            job_id = json.loads(await pool.send(submit))["job_id"]
            message = pool.message("GET", f"/jobs/{job_id}")
    return lambda _jobs: pool.send(message)


class _Driver:
    def __init__(self, spec: LoadSpec, call: Callable[[int], Any]) -> None:
        self.spec = spec
        self.call = call
        self.jobs_per_call = spec.batch_size if spec.kind == "batch" else 1
        self.result = LoadResult(began_at=time.time())
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.measure_from = self.start + spec.warmup
        self.stop_at = self.measure_from + spec.duration if spec.duration is not None else float("inf")
        self.claimed = 0  # jobs claimed by callers, so that total_jobs is not overshot

    def _more(self) -> bool:
        if time.perf_counter() >= self.stop_at:
            return False
        return self.spec.total_jobs is None or self.claimed < self.spec.total_jobs

    def _claim(self) -> int:
        """Jobs in the next call (the last batch may be short); 0 when there is nothing left to send."""
        if self.spec.total_jobs is None:
            return self.jobs_per_call
        count = min(self.jobs_per_call, self.spec.total_jobs - self.claimed)
        self.claimed += max(count, 0)
        return max(count, 0)

    async def _one(self, jobs: int, scheduled: float | None = None) -> None:
        sent = time.perf_counter()
        try:
            await self.call(jobs)
        except Exception as error:
            self.result.errors += 1
            if len(self.result.error_samples) < 5:
                self.result.error_samples.append(f"{type(error).__name__}: {str(error)[:300]}")
            return
        done = time.perf_counter()
        # Throughput counts what completed inside the window; latency, what was sent inside it.
        if self.measure_from <= done <= self.stop_at:
            self.result.calls += 1
            self.result.jobs += jobs
        if (scheduled if scheduled is not None else sent) >= self.measure_from:
            self.result.latencies.append(done - sent)
            if scheduled is not None:
                self.result.scheduled_latencies.append(done - scheduled)

    async def closed_loop(self) -> LoadResult:
        async def caller() -> None:
            while self._more():
                jobs = self._claim()
                if jobs <= 0:
                    return
                await self._one(jobs)

        await asyncio.gather(*(caller() for _ in range(self.spec.concurrency)))
        return self._finish()

    async def open_loop(self) -> LoadResult:
        assert self.spec.rate is not None
        interval = self.jobs_per_call / self.spec.rate  # seconds between calls
        tasks: set[asyncio.Task[None]] = set()
        sent = 0
        while self._more():
            now = time.perf_counter()
            # Send every call whose time has come (the event loop wakes up late now and then).
            while self.start + sent * interval <= now and self._more():
                scheduled = self.start + sent * interval
                sent += 1
                if len(tasks) >= self.spec.max_in_flight:
                    if scheduled >= self.measure_from:
                        self.result.dropped += 1
                    continue
                jobs = self._claim()
                if jobs <= 0:
                    break
                task = asyncio.create_task(self._one(jobs, scheduled))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, self.start + sent * interval - time.perf_counter()))
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, timeout=self.spec.timeout)
        return self._finish()

    def _finish(self) -> LoadResult:
        end = min(time.perf_counter(), self.stop_at)
        self.result.elapsed = max(0.0, end - self.measure_from)
        self.result.cpu_seconds = time.process_time() - self.cpu_start
        self.result.wall_seconds = time.perf_counter() - self.start
        return self.result
