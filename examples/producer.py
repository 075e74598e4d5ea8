"""A producer: submits a few jobs with the client library, waits for them, and prints the outcome.

Its payloads are the models of examples/jobs.py, the contract it shares with examples/handlers.py.

Run it from the repository root against a running service whose executor loads the example handlers:

    python -m services.executor --handlers examples.handlers     # in one shell (with api + scheduler)
    python -m examples.producer --server localhost:50051          # in another

Exit code 0 when every job COMPLETED, 1 otherwise, 2 when the service cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Sequence

from examples.jobs import Countdown, Flaky, WordCount, countdown, flaky, word_count
from jobclient import Job, JobClient, JobClientError, JobSpec, JobStatus

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "to be or not to be\nthat is the question",
    "a job queue on postgres\nwith retries\nand idempotency keys",
]


def produce(client: JobClient, run_id: str, timeout: float) -> list[Job]:
    """Submit the example jobs and return them once they have all finished."""
    # Several jobs in one call (one transaction). Keys derived from the run id make re-running this
    # function with the same run id safe: the jobs already submitted are returned, not duplicated.
    batch = client.submit_many(
        JobSpec(word_count, WordCount(text=text), idempotency_key=f"{run_id}-words-{i}") for i, text in enumerate(TEXTS)
    )
    # One job at a time, with options; no key given, so the client makes one up for its own retries.
    counting = client.submit(countdown, Countdown(start=3, interval=0.05), priority=2, timeout=30)
    # A job that fails once and is retried by the executor.
    retried = client.submit(flaky, Flaky(failures=1), max_attempts=3)
    for job in [*batch, counting, retried]:
        print(f"submitted job {job.job_id} ({job.type}){'' if job.created else ' (already there)'}")
    return [client.wait(job.job_id, timeout=timeout) for job in [*batch, counting, retried]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.producer", description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("JOBCTL_SERVER", "localhost:50051"))
    parser.add_argument("--token", default=os.environ.get("JOBCTL_TOKEN"))
    parser.add_argument("--run-id", default=uuid.uuid4().hex[:12], help="makes the submits idempotent per run")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each job")
    args = parser.parse_args(argv)
    try:
        with JobClient(args.server, token=args.token) as client:
            finished = produce(client, args.run_id, args.timeout)
    except JobClientError as exc:
        print(f"producer: {exc}", file=sys.stderr)
        return 2
    for job in finished:
        outcome = job.result if job.status is JobStatus.COMPLETED else job.error_message
        print(f"job {job.job_id} {job.type}: {job.status.value} after {job.attempts} attempt(s): {outcome}")
    return 0 if all(job.status is JobStatus.COMPLETED for job in finished) else 1


if __name__ == "__main__":
    raise SystemExit(main())
