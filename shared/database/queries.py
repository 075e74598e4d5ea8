"""Named SQL statements, one ``sql/<name>.sql`` file each, read once at import; and running them.

A query, the gateway method that runs it and its metric share the verb (``lease_jobs``...).

``run`` is the one place a statement is executed. Its answer, ``Rows``, can only be read by column
name (``records(LeasedJob)``, ``value("seconds")``, ``jobs()``...): no caller ever depends on the order
of the columns a SQL file returns, and tests/test_gateway.py proves it by reversing every answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Connection, CursorResult, TextClause, text

from shared.jobs import Job

__all__ = ["QUERIES", "Rows", "query", "run"]

_SQL_DIR = Path(__file__).with_name("sql")

QUERIES: dict[str, TextClause] = {path.stem: text(path.read_text()) for path in sorted(_SQL_DIR.glob("*.sql"))}


R = TypeVar("R", bound=NamedTuple)


def query(name: str) -> TextClause:
    """The statement in ``sql/<name>.sql``."""
    return QUERIES[name]


def run(conn: Connection, name: str, params: Mapping[str, Any] | None = None) -> Rows:
    """Execute the statement ``name`` on ``conn``; its answer, read by column name."""
    return Rows.of(conn.execute(QUERIES[name], dict(params) if params is not None else {}))


class Rows:
    """The rows one statement returned, with their column names; read by name only."""

    __slots__ = ("_rows", "columns", "rowcount")

    def __init__(self, columns: tuple[str, ...], rows: Sequence[Sequence[Any]], rowcount: int) -> None:
        self.columns = columns
        self._rows = rows
        self.rowcount = rowcount

    @classmethod
    def of(cls, result: CursorResult[Any]) -> Rows:
        """Everything ``result`` returned (plain rows: far cheaper than SQLAlchemy's row mappings)."""
        if not result.returns_rows:
            return cls((), (), result.rowcount)
        return cls(tuple(result.keys()), result.all(), result.rowcount)

    def __len__(self) -> int:
        return len(self._rows)

    def __bool__(self) -> bool:
        return bool(self._rows)

    def records(self, cls: type[R]) -> list[R]:
        """Every row as ``cls`` (a NamedTuple), each field taken from the column of its name; other
        columns are ignored, and a missing one is a KeyError naming it."""
        fields: tuple[str, ...] = cls._fields
        make = cls._make
        if self.columns == fields:  # the usual case costs no reordering
            return [make(row) for row in self._rows]
        pick = itemgetter(*self._positions(cls.__name__, fields))
        if len(fields) == 1:
            return [make((pick(row),)) for row in self._rows]
        return [make(pick(row)) for row in self._rows]

    def first(self, cls: type[R]) -> R | None:
        """The first row as ``cls``, or None when there is none."""
        return self.records(cls)[0] if self._rows else None

    def one(self, cls: type[R]) -> R:
        """The only row as ``cls``; an error unless there is exactly one."""
        if len(self._rows) != 1:
            raise LookupError(f"expected one row, got {len(self._rows)}")
        return self.records(cls)[0]

    def column(self, name: str) -> list[Any]:
        """The values of one column, row by row."""
        (position,) = self._positions("column", (name,))
        return [row[position] for row in self._rows]

    def value(self, name: str) -> Any:
        """The column ``name`` of the only row; an error unless there is exactly one row."""
        if len(self._rows) != 1:
            raise LookupError(f"expected one row, got {len(self._rows)}")
        return self.column(name)[0]

    def mappings(self) -> Iterator[dict[str, Any]]:
        """Each row as a dict by column name (for the few reads that are neither hot nor typed)."""
        for row in self._rows:
            yield dict(zip(self.columns, row, strict=True))

    def jobs(self) -> list[Job]:
        """Every row as a Job (rows with the jobs table's columns, or more)."""
        return Job.from_rows(self.columns, self._rows)

    def _positions(self, what: str, names: Sequence[str]) -> list[int]:
        index = {name: position for position, name in enumerate(self.columns)}
        missing = [name for name in names if name not in index]
        if missing:
            raise KeyError(f"{what} needs the columns {missing}; the statement returned {list(self.columns)}")
        return [index[name] for name in names]
