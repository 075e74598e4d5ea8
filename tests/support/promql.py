"""Which metric names PromQL reads, and which the services define: for the dashboard and the alert rules.

The services' metrics modules are read, not imported: the three cannot share one process's registry, some
names being the same.
"""

from __future__ import annotations

import ast
import re

from tests.support.processes import ROOT

METRICS_MODULES = [ROOT / "services" / name / "metrics.py" for name in ("api", "executor", "scheduler")] + [
    ROOT / "shared" / name / "metrics.py" for name in ("database", "runtime")
]
# PromQL words that are not metric names.
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}


def defined_metrics() -> dict[str, str]:
    """Metric family name -> type, for every metric the metrics modules of services/ and shared/ define."""
    kinds = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary"}
    found: dict[str, str] = {}
    for path in METRICS_MODULES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in kinds and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found[first.value.removesuffix("_total")] = kinds[node.func.id]
            # Collectors that export gauges under names listed in a module-level dict (QUEUE_DEPTH_GAUGES).
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Dict)
                and any(isinstance(t, ast.Name) and t.id.endswith("_GAUGES") for t in node.targets)
            ):
                for key in node.value.keys:
                    assert isinstance(key, ast.Constant) and isinstance(key.value, str)
                    found[key.value] = "gauge"
    return found


def exposed_series(metrics: dict[str, str]) -> set[str]:
    """The series names Prometheus stores for those metrics (counters get _total, histograms _bucket...)."""
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("_sum", "_count", ""),
    }
    return {name + suffix for name, kind in metrics.items() for suffix in suffixes[kind]}


def promql_metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords or labels."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        word = match.group()
        if following.startswith("(") or word in PROMQL_KEYWORDS or text[max(0, match.start() - 1)] == "$":
            continue
        names.add(word)
    return names
