"""The gateway's Prometheus metrics, the same in every process (each serves them at its /metrics).

database_up                          1 while the last database call of this process succeeded
database_errors_total{operation}     database calls that failed, by gateway operation (the query's verb);
                                     a domain answer (job not found, a key conflict...) is not a failure
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["DATABASE_ERRORS", "DATABASE_UP"]

DATABASE_UP = Gauge("database_up", "1 while the last database call of this process succeeded")
DATABASE_ERRORS = Counter(
    "database_errors_total", "Database calls that failed (unavailable or refused), by operation", ["operation"]
)
