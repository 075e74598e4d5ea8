"""The soak's load: a paced producer of keyed jobs of five kinds, each with the final state it must reach.

Job ``n`` of a run gets the idempotency key ``soak-<run>-<n>`` and a kind chosen by ``n``:

==============  =====  ===============================================================  ============
kind            share  what it is                                                       must end
==============  =====  ===============================================================  ============
record          80 %   ``tests.record``: 0-100 ms, writes one line per execution (pid)   COMPLETED
echo            10 %   ``echo``, inline                                                 COMPLETED
retry            5 %   ``fail`` on its first attempt, then succeeds                     COMPLETED
dead             3 %   ``fail`` on both of its 2 attempts                               FAILED
cancel           2 %   ``echo`` scheduled 30 s ahead, then cancelled through the API    CANCELLED
==============  =====  ===============================================================  ============

A call that fails for any reason is sent again with the same keys and payloads until it succeeds, so the
count of accepted jobs is exact even when a call's answer is lost.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")  # this process starts executors while gRPC runs

import grpc
from google.protobuf import struct_pb2

from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub

__all__ = ["EXPECTED", "KINDS", "Producer", "job_for"]

KINDS = ("record", "echo", "retry", "dead", "cancel")
EXPECTED = {"record": "COMPLETED", "echo": "COMPLETED", "retry": "COMPLETED", "dead": "FAILED", "cancel": "CANCELLED"}
RECORD_SECONDS = (0.0, 0.01, 0.05, 0.1)
CANCEL_AHEAD_SECONDS = 30.0
CALL_TIMEOUT_SECONDS = 10.0
GIVE_UP_SECONDS = 120.0  # a call retried this long fails the soak
RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def _struct(**values: float) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def job_for(run: str, n: int) -> tuple[str, pb.SubmitJobRequest]:
    """The kind of job ``n`` and its request."""
    key = f"soak-{run}-{n}"
    share = n % 100
    if share < 80:
        payload = _struct(seconds=RECORD_SECONDS[n % len(RECORD_SECONDS)])
        return "record", pb.SubmitJobRequest(type="tests.record", payload=payload, idempotency_key=key, max_attempts=10)
    if share < 90:
        return "echo", pb.SubmitJobRequest(type="echo", payload=_struct(n=n), idempotency_key=key)
    if share < 95:
        return "retry", pb.SubmitJobRequest(type="fail", payload=_struct(times=1), idempotency_key=key, max_attempts=3)
    if share < 98:
        return "dead", pb.SubmitJobRequest(type="fail", payload=_struct(n=n), idempotency_key=key, max_attempts=2)
    request = pb.SubmitJobRequest(type="echo", payload=_struct(n=n), idempotency_key=key)
    request.scheduled_at.FromDatetime(datetime.fromtimestamp(time.time() + CANCEL_AHEAD_SECONDS, timezone.utc))
    return "cancel", request


@dataclass
class Accepted:
    """What the producer knows: every accepted job's kind, and what went wrong on the way."""

    kinds: dict[int, str] = field(default_factory=dict)  # job_id -> kind
    created: int = 0  # answers with created=True (a retried call may find its jobs already made)
    calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    cancels_pending: list[int] = field(default_factory=list)
    cancels_done: int = 0


class Producer(threading.Thread):
    """Offers ``rate`` jobs/s in SubmitJobs calls every ``tick`` seconds until :meth:`stop`."""

    def __init__(self, target: str, run: str, rate: float, tick: float = 0.1) -> None:
        super().__init__(name="soak-producer", daemon=True)
        self.target = target
        self.run_id = run
        self.rate = rate
        self.tick = tick
        self.accepted = Accepted()
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self.failure = ""

    def stop(self) -> None:
        self._stopping.set()

    def submitted(self) -> int:
        with self.lock:
            return len(self.accepted.kinds)

    def run(self) -> None:
        try:
            self._produce()
        except Exception as error:  # reported by the soak, which then fails
            self.failure = f"{type(error).__name__}: {error}"

    def _produce(self) -> None:
        with grpc.insecure_channel(self.target, options=RECONNECT) as channel:
            stub = JobServiceStub(channel)
            began = time.monotonic()
            offered = 0
            while not self._stopping.is_set():
                due = int((time.monotonic() - began) * self.rate) - offered
                if due > 0:
                    for start in range(offered, offered + due, 1000):
                        self._submit(stub, range(start, min(start + 1000, offered + due)))
                    offered += due
                self._cancel(stub)
                self._stopping.wait(self.tick)
            self._cancel(stub, until_done=True)

    def _submit(self, stub: JobServiceStub, numbers: range) -> None:
        jobs = [job_for(self.run_id, n) for n in numbers]
        request = pb.SubmitJobsRequest(jobs=[job for _, job in jobs])
        deadline = time.monotonic() + GIVE_UP_SECONDS
        while True:
            self.accepted.calls += 1
            try:
                results = stub.SubmitJobs(request, timeout=CALL_TIMEOUT_SECONDS).results
                break
            except grpc.RpcError as error:
                with self.lock:
                    self.accepted.errors[f"SubmitJobs {error.code().name}"] += 1
                if time.monotonic() > deadline:
                    # The accounting then counts jobs of this call found in the table as never acknowledged.
                    self.failure = f"SubmitJobs failed for {GIVE_UP_SECONDS:g} s: {error.code().name} {error.details()}"
                    self._stopping.set()
                    return
                time.sleep(0.2)
        with self.lock:
            for (kind, _), result in zip(jobs, results, strict=True):
                self.accepted.kinds[result.job.job_id] = kind
                self.accepted.created += result.created
                if kind == "cancel":
                    self.accepted.cancels_pending.append(result.job.job_id)

    def _cancel(self, stub: JobServiceStub, until_done: bool = False) -> None:
        deadline = time.monotonic() + CANCEL_AHEAD_SECONDS
        while self.accepted.cancels_pending:
            job_id = self.accepted.cancels_pending[0]
            try:
                stub.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=CALL_TIMEOUT_SECONDS)
            except grpc.RpcError as error:
                with self.lock:
                    self.accepted.errors[f"CancelJob {error.code().name}"] += 1
                if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    self.accepted.cancels_pending.pop(0)  # already finished: the accounting will show it
                    continue
                if not until_done or time.monotonic() > deadline:
                    return
                time.sleep(0.2)
                continue
            with self.lock:
                self.accepted.cancels_pending.pop(0)
                self.accepted.cancels_done += 1
