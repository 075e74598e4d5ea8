"""Scenario results: the headline metrics as a table, everything as JSON."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Metric", "ScenarioResult", "environment", "format_table", "to_json", "write_json"]


@dataclass
class Metric:
    """One number of the table. ``target`` is the issue's goal, e.g. ``>= 20000`` or ``<= 20``."""

    name: str
    value: float
    unit: str
    target: str | None = None
    note: str = ""

    def verdict(self) -> str:
        if self.target is None or math.isnan(self.value):
            return ""
        op, _, number = self.target.partition(" ")
        goal = float(number)
        met = {">=": self.value >= goal, "<=": self.value <= goal, "<": self.value < goal, ">": self.value > goal}
        return "ok" if met[op] else "MISS"


@dataclass
class ScenarioResult:
    name: str
    description: str
    metrics: list[Metric] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def add(self, name: str, value: float, unit: str, target: str | None = None, note: str = "") -> None:
        self.metrics.append(Metric(name, value, unit, target, note))


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    if float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(results: Sequence[ScenarioResult]) -> str:
    """A plain-text table: scenario, metric, value, unit, target and whether it was met."""
    rows = [("scenario", "metric", "value", "unit", "target", "", "note")]
    for result in results:
        if result.error is not None:
            rows.append((result.name, "FAILED", "-", "", "", "", result.error.splitlines()[-1][:80]))
            continue
        for index, metric in enumerate(result.metrics):
            rows.append(
                (
                    result.name if index == 0 else "",
                    metric.name,
                    _number(metric.value),
                    metric.unit,
                    metric.target or "",
                    metric.verdict(),
                    metric.note,
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {2}
    lines = []
    for number, row in enumerate(rows):
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_markdown(results: Sequence[ScenarioResult]) -> str:
    """The same table in Markdown (for docs/benchmarks.md)."""
    lines = ["| scenario | metric | value | unit | target | |", "|---|---|---:|---|---|---|"]
    for result in results:
        if result.error is not None:
            lines.append(f"| {result.name} | FAILED | | | | |")
            continue
        for metric in result.metrics:
            lines.append(
                f"| {result.name} | {metric.name} | {_number(metric.value)} | {metric.unit} | "
                f"{metric.target or ''} | {metric.verdict()} |"
            )
    return "\n".join(lines)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def environment(server_version: str) -> dict[str, Any]:
    """Where the numbers were taken: the machine, its load, the versions, the commit."""
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "postgresql": server_version,
        "git_commit": _git("rev-parse", "HEAD").strip(),
        # Uncommitted changes to tracked files ran too: name them.
        "git_modified": [line[3:] for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()],
    }


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def to_json(results: Sequence[ScenarioResult], meta: dict[str, Any]) -> dict[str, Any]:
    return _clean(
        {
            **meta,
            "scenarios": {
                result.name: {
                    **asdict(result),
                    "metrics": [{**asdict(m), "verdict": m.verdict()} for m in result.metrics],
                }
                for result in results
            },
        }
    )


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
