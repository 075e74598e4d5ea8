"""The runtime's Prometheus metrics, the same in every process that runs loops (executor, scheduler).

loop_duration_seconds{loop}    time of one pass of a loop (a lease round, a flush, a duty's batch)
loop_errors_total{loop}        unexpected errors in a loop (a bug: see the log); the loop backs off and goes on
loop_busy_seconds{loop}        how long the loop's current pass has run, 0 while it waits: a loop stuck in a
                               pass shows here (and in the log after STUCK_AFTER_SECONDS)
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["LOOP_DURATION", "LOOP_ERRORS", "LOOP_GAUGES"]

LOOP_DURATION = Histogram(
    "loop_duration_seconds",
    "Time of one pass of a loop",
    ["loop"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LOOP_ERRORS = Counter("loop_errors_total", "Unexpected errors in a loop (it backs off and goes on)", ["loop"])
# Exported by loops.Pulse's collector, read at scrape time rather than set on every pass: name -> help.
LOOP_GAUGES = {"loop_busy_seconds": "How long the loop's current pass has run; 0 while it waits"}
