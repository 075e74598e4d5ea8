"""The scenarios, in the order ``python -m bench`` runs them. Each module has NAME, DESCRIPTION and
``run(ctx, config) -> ScenarioResult``."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from bench.config import BenchConfig
from bench.harness import BenchContext
from bench.report import ScenarioResult
from bench.scenarios import batch, bigtable, bulk, crash, drain, latency, pgbouncer, rest, sustained, unary

__all__ = ["SCENARIOS", "Scenario"]

Scenario = Callable[[BenchContext, BenchConfig], ScenarioResult]

_MODULES: list[ModuleType] = [drain, sustained, unary, batch, latency, bigtable, rest, pgbouncer, bulk, crash]
SCENARIOS: dict[str, ModuleType] = {module.NAME: module for module in _MODULES}
