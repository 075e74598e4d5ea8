"""Named SQL statements, one ``sql/<name>.sql`` file each, read once at import.

A query, the function that runs it and its metric share the verb (``lease_jobs``...).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import TextClause, text

__all__ = ["QUERIES", "query"]

_SQL_DIR = Path(__file__).with_name("sql")

QUERIES: dict[str, TextClause] = {path.stem: text(path.read_text()) for path in sorted(_SQL_DIR.glob("*.sql"))}


def query(name: str) -> TextClause:
    """The statement in ``sql/<name>.sql``."""
    return QUERIES[name]
