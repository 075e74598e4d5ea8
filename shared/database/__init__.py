"""The database gateway: the one way any process reaches PostgreSQL, and the one place SQL runs.

    db = Database(settings.database_url, "executor", pool_size=5)
    jobs = await db.lease_jobs(owner, types, limit=free, lease_seconds=30)

``Database`` has one async method per named operation, with typed parameters and typed results. Rows
are read by column name (queries.Rows), never by position. The gateway alone owns the thread offload
(psycopg2 through SQLAlchemy is blocking), the translation of driver errors into shared.errors, outage
detection and logging, the ``database_*`` metrics and the statements' spans (gateway.py). Services
import this package and nothing below it, and never SQLAlchemy or psycopg2 (tests/test_gateway.py).

Modules, by who calls them:

- ``jobs``: the api's submits and reads; ``limits``, ``schedules``: job types (limits, pauses) and
  cron schedules (the api, and the scheduler's occurrences); ``executors``: the executor registry;
- ``queue``: the executor's lease, heartbeat, complete, release;
- ``maintenance``: the scheduler's promote, rescue, prune, compact;
- ``sessions``: what needs a connection of its own (the leader lock, LISTEN);
- ``schema``: the schema check every process makes at start; ``migrations``: the Alembic migrations that
  make the schema, shipped in the package (``apply_migrations``, run by ``jobservice migrate``);
- ``queries``: the named SQL under ``sql/`` and ``Rows``; ``engine``: connecting, driver errors;
  ``gateway``: the machinery every operation shares; ``metrics``: database_up, database_errors_total.

Adding a query (docs/architecture.md, "Where does my change go"): write ``sql/<verb>.sql``, then one
method in the module of its caller, decorated ``@operation()``, that runs it with ``run(conn, "<verb>",
params)`` and reads the rows by name (``.records(SomeNamedTuple)``, ``.value("column")``). Callers
``await db.<verb>(...)``; the method's name is the operation's metric label and span name.
"""

from __future__ import annotations

from shared.database.engine import describe_failed_statement
from shared.database.executors import ExecutorQueries
from shared.database.gateway import last_statement_span
from shared.database.jobs import JobQueries
from shared.database.limits import LimitQueries
from shared.database.maintenance import CompactedCounts, MaintenanceQueries, PromotedJob, RescuedJob
from shared.database.migrations import MigrationFailed, apply_migrations
from shared.database.queue import (
    JobOutcome,
    LeasedJob,
    LeaseState,
    LimitedLease,
    QueueQueries,
    fairness_turn,
    next_start_key,
)
from shared.database.schedules import ScheduleQueries, SubmittedOccurrence
from shared.database.schema import SCHEMA_REVISION, SchemaQueries
from shared.database.sessions import LeaderLock, Listening, SessionQueries

__all__ = [
    "SCHEMA_REVISION",
    "CompactedCounts",
    "Database",
    "JobOutcome",
    "LeaderLock",
    "LeaseState",
    "LeasedJob",
    "LimitedLease",
    "Listening",
    "MigrationFailed",
    "PromotedJob",
    "RescuedJob",
    "SubmittedOccurrence",
    "apply_migrations",
    "describe_failed_statement",
    "fairness_turn",
    "last_statement_span",
    "next_start_key",
]


class Database(
    JobQueries,
    ExecutorQueries,
    LimitQueries,
    ScheduleQueries,
    QueueQueries,
    MaintenanceQueries,
    SessionQueries,
    SchemaQueries,
):
    """Every operation of every process, on one pool of connections and one pool of database threads.

    Built once per process (``Database(url, application_name, pool_size=...)``, see Gateway) and
    closed at exit (``close()``). Tests can pass a subclass or any object with the methods a loop uses.
    """
