"""A scheduler process for tests, with a metrics port of its own: leadership and counters read from it."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import STARTUP_TIMEOUT, ServiceProcess, free_port, wait_until

# Short intervals so each test sees a duty run within a fraction of a second.
FAST_SCHEDULER_ENV = {
    "SCHEDULER_RESCUE_INTERVAL_SECONDS": "0.1",
    "SCHEDULER_PRUNE_INTERVAL_SECONDS": "0.1",
    "SCHEDULER_COMPACT_INTERVAL_SECONDS": "0.1",
    "LOG_LEVEL": "DEBUG",
}


class Scheduler(ServiceProcess):
    """A scheduler process with its own metrics port."""

    def __init__(self, database_url: str, log_dir: Path, args: list[str] | None = None, **env: str) -> None:
        self.metrics_port = free_port()
        super().__init__(
            "services.scheduler",
            {"DATABASE_URL": database_url, "METRICS_PORT": str(self.metrics_port), **FAST_SCHEDULER_ENV, **env},
            args or [],
            log_dir,
        )

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample's value from /metrics; None when the process does not answer (yet)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
                body = response.read().decode()
        except OSError:
            return None
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return None

    def is_leader(self) -> bool:
        if not self.alive():
            raise AssertionError(f"scheduler exited:\n{self.output()[-3000:]}")
        return self.metric("scheduler_is_leader") == 1

    def wait_until_leader(self, timeout: float = STARTUP_TIMEOUT) -> Scheduler:
        wait_until(self.is_leader, timeout, what="the scheduler to become leader")
        return self

    def wait_for_log(self, fragment: str, timeout: float = 15) -> None:
        wait_until(lambda: fragment in self.output(), timeout, what=f"{fragment!r} in the scheduler's log")
