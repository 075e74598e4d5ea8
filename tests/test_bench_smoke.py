"""Smoke runs of ``python -m bench``: the drain and the rest scenario, tiny, end to end.

Only correctness is asserted (every submitted job completed, every call answered); timings on a shared test machine mean
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


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_quick_rest_round_answers_every_call(tmp_path: Path) -> None:
    """The rest scenario's four calls and its fixed-rate run, tiny: every call answered, none failed."""
    output = tmp_path / "bench.json"
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--quick", "--scenarios", "rest", "--unary-rate", "100"),
            *("--server-url", server_url(), "--output", str(output)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "POST /jobs / SubmitJob" in completed.stdout

    rest = json.loads(output.read_text())["scenarios"]["rest"]
    assert rest["error"] is None
    for kind in ("unary", "rest_submit", "rest_get", "health"):
        (run,) = rest["details"][kind]
        assert run["calls"] > 0 and run["errors"] == 0, (kind, run["error_samples"])
    fixed = rest["details"]["fixed_rate"]
    assert fixed["calls"] > 0 and fixed["errors"] == 0, fixed["error_samples"]
