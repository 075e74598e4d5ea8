"""``python -m bench``: the job service's benchmark suite (see docs/benchmarks.md).

Each scenario starts the real services (``python -m services.api``, ``.scheduler``, ``.executor``)
against a fresh database of its own, drives them from separate load-generator processes, and returns
a :class:`bench.report.ScenarioResult`; ``bench.cli`` prints them as a table and writes them as JSON.
"""
