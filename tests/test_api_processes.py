"""Several api processes on one pair of ports (API_PROCESSES): connections spread over them, /metrics sums
them, and a signal to the supervisor stops them all."""

from __future__ import annotations

import os
import re
import signal
import urllib.request
from pathlib import Path

import grpc

from shared.proto.jobs.v1 import job_service_pb2 as pb
from shared.proto.jobs.v1.job_service_pb2_grpc import JobServiceStub
from tests.support.processes import ServiceProcess, free_port, wait_until

PROCESSES = 2
CHANNELS = 12
JOBS_PER_CHANNEL = 10


def start_two_api_processes(db: str, log_dir: Path) -> tuple[ServiceProcess, int, int]:
    """``python -m services.api`` with API_PROCESSES=2, once both ports answer; and the ports."""
    grpc_port, http_port = free_port(), free_port()
    env = {"DATABASE_URL": db, "GRPC_PORT": str(grpc_port), "HTTP_PORT": str(http_port), "API_PROCESSES": "2"}
    api = ServiceProcess("services.api", env, log_dir=log_dir).start()
    try:
        api.wait_for_port(http_port).wait_for_port(grpc_port)
    except BaseException:
        api.stop()
        raise
    return api, grpc_port, http_port


def test_several_api_processes_share_the_ports_and_sum_their_metrics(db: str, tmp_path: Path) -> None:
    api, grpc_port, http_port = start_two_api_processes(db, tmp_path)
    try:
        for channel_number in range(CHANNELS):
            # A fresh channel is a fresh TCP connection: the kernel picks a process for each.
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                stub = JobServiceStub(channel)
                for i in range(JOBS_PER_CHANNEL):
                    request = pb.SubmitJobRequest(type="multi.idle", idempotency_key=f"{channel_number}-{i}")
                    stub.SubmitJob(request, timeout=10)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as response:
            body = response.read().decode()
        created = re.search(r'^jobs_created_total\{job_type="multi.idle"\} (\S+)$', body, re.MULTILINE)
        assert created is not None, body[:2000]
        # Every process counted its own submits; any of them serves the sum.
        assert float(created.group(1)) == CHANNELS * JOBS_PER_CHANNEL
        assert "jobs_ready_count" in body
        log = api.output()
        started = re.search(rf"started {PROCESSES} api processes \(pids (\d+), (\d+)\)", log)
        assert started is not None, log[-2000:]
        # The port answers once the first process listens; the second may still be starting.
        wait_until(lambda: api.output().count("serving gRPC on") == PROCESSES, 30, what="every process serving")
        # Each of them listens on both ports itself (SO_REUSEPORT), not one behind the other.
        for pid in map(int, started.groups()):
            assert _listening_ports(pid) >= {grpc_port, http_port}, pid
        api.signal(signal.SIGTERM)
        assert api.process is not None and api.process.wait(30) == 0, api.output()[-2000:]
    finally:
        api.stop()


def _listening_ports(pid: int) -> set[int]:
    """TCP ports a process has a listening socket on (from /proc: its socket inodes, then /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_when_one_api_process_dies_the_others_stop_and_the_supervisor_fails(db: str, tmp_path: Path) -> None:
    api, _, _ = start_two_api_processes(db, tmp_path)
    try:
        started = re.search(r"started 2 api processes \(pids (\d+), (\d+)\)", api.output())
        assert started is not None, api.output()[-2000:]
        first, second = map(int, started.groups())
        os.kill(first, signal.SIGKILL)
        # The orchestrator sees the whole set fail and restarts it, rather than a silently smaller api.
        assert api.process is not None and api.process.wait(30) == 1, api.output()[-2000:]
        assert not Path(f"/proc/{second}").exists() or "zombie" in Path(f"/proc/{second}/status").read_text()
    finally:
        api.stop()
