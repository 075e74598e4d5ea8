"""A smoke run of ``python -m bench``: the drain scenario, tiny, end to end.

Only correctness is asserted (every submitted job completed); timings on a shared test machine mean
nothing. The full suite is ``make bench`` (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.database import server_url

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_drain_completes_every_job(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    jobs = 500
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--scenarios",
            "drain",
            "--drain-jobs",
            str(jobs),
            "--server-url",
            server_url(),
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    document = json.loads(output.read_text())
    drain = document["scenarios"]["drain"]
    assert drain["error"] is None
    runs = [run for combination in drain["details"]["combinations"] for run in combination["runs"]]
    assert runs
    for run in runs:
        assert run["jobs"] == jobs
        assert run["completed"] == jobs, run
        assert run["failed"] == 0, run
    assert drain["details"]["all_completed"] is True
