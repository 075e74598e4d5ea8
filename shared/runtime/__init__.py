"""What every process runs on, the same way: signals and graceful stop (``Shutdown``), the start-up wait
for the database and its schema (``wait_for_schema``), back-off with jitter (``Backoff``), loops
(``Duty``/``run_duty`` for periodic duties, ``supervise`` for loops that must not die, ``Pulse`` and
``watch_loops`` so a stuck one shows), and one LISTEN that reconnects (``Listener``).

Processes reach the database through shared.database's gateway; this package only schedules the calls.
"""

from __future__ import annotations

from shared.runtime.backoff import Backoff
from shared.runtime.listen import Listener
from shared.runtime.loops import Duty, Pulse, run_duty, sleep_or_stop, supervise, watch_loops
from shared.runtime.signals import Shutdown
from shared.runtime.startup import wait_for_schema

__all__ = [
    "Backoff",
    "Duty",
    "Listener",
    "Pulse",
    "Shutdown",
    "run_duty",
    "sleep_or_stop",
    "supervise",
    "wait_for_schema",
    "watch_loops",
]
