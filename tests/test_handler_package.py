"""The example handler package (examples/handler-package) as a team ships its own handlers: its wheel is
built and installed with the server's into a fresh venv; from there, outside the checkout, the executor
finds its handlers through the ``jobservice.handlers`` entry point (no --handlers, no PYTHONPATH), the
package's own tests pass, and an executor started from that venv runs its jobs against PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shared.jobs import JobStatus
from tests.support.executors import submit, wait_for_jobs
from tests.support.processes import ROOT, ServiceProcess, wait_until
from tests.support.wheels import PIP_TIMEOUT_SECONDS, build_wheel, clean_env, fresh_venv, run, server_sources

# Two wheels built and installed with their dependencies into a fresh venv: minutes on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(PIP_TIMEOUT_SECONDS + 600)]

PACKAGE = ROOT / "examples" / "handler-package"


def test_the_example_handler_package_installs_beside_the_server_and_runs_its_jobs(tmp_path: Path, engine, db) -> None:
    server = build_wheel(server_sources(), tmp_path)
    package = build_wheel([PACKAGE / name for name in ("pyproject.toml", "README.md", "acme_jobs")], tmp_path)
    bin_dir = fresh_venv(tmp_path / "venv", str(server), f"{package}[test]")
    python = str(bin_dir / "python")
    elsewhere = tmp_path / "elsewhere"  # nothing of the project in it
    elsewhere.mkdir()

    listing = run([python, "-m", "services.executor", "--list-handlers"], elsewhere)
    assert "acme.invoice_total\tthread\tacme_jobs.handlers.invoice_total\tacme_jobs.handlers.Invoice" in listing
    where = run([python, "-c", "import acme_jobs, services; print(acme_jobs.__file__, services.__file__)"], elsewhere)
    assert all(Path(path).is_relative_to(tmp_path / "venv") for path in where.split()), where

    # The package's own tests (run_handler, no database) pass against what was installed.
    shutil.copytree(PACKAGE / "tests", elsewhere / "tests")
    assert "2 passed" in run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], elsewhere)

    env = {**clean_env(), "PYTHONPATH": "", "DATABASE_URL": db, "METRICS_PORT": "0", "LOG_LEVEL": "INFO"}
    command = [python, "-m", "services.executor"]
    executor = ServiceProcess("services.executor", env, command=command, cwd=elsewhere, log_dir=tmp_path).start()
    try:
        wait_until(lambda: " started: " in executor.output() or not executor.alive(), 120, what="the executor")
        assert executor.alive(), executor.output()
        invoice = {"customer": "ada", "lines": [{"sku": "a", "quantity": 2, "unit_cents": 500}], "discount_percent": 5}
        [good] = submit(engine, "acme.invoice_total", invoice)
        [bad] = submit(engine, "acme.invoice_total", {"customer": "bob", "lines": [{"sku": ""}]}, max_attempts=3)
        jobs = wait_for_jobs(engine, [good, bad], timeout=60)
    finally:
        assert executor.stop() == 0, executor.output()
    assert jobs[good].status is JobStatus.COMPLETED, jobs[good].error_message
    assert jobs[good].result == {"customer": "ada", "currency": "EUR", "subtotal_cents": 1000, "total_cents": 950}
    assert jobs[bad].status is JobStatus.FAILED and jobs[bad].attempts == 1
    assert jobs[bad].error_message == (
        "InvalidPayload: payload.lines[0].sku: string should have at least 1 character; "
        "payload.lines[0].unit_cents: field required"
    )
