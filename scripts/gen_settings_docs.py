"""Rewrite the settings tables of README.md and docs/*.md from the declarations (``make docs``).

A table is whatever lies between a line ``<!-- settings: NAME -->`` (or ``<!-- settings: NAME GLOB ... -->``,
keeping only the variables that match one of the globs) and the next ``<!-- end settings -->``. NAME is one
of ``TABLES``. tests/test_settings_docs.py fails while a table differs from what this script writes.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from pathlib import Path

from scripts.run_local import RunLocalSettings
from services.api.settings import ApiSettings
from services.executor.handlers.send_email import SmtpSettings
from services.executor.settings import ExecutorSettings
from services.scheduler.settings import SchedulerSettings
from shared.settings import ProcessSettings, Settings, settings_table

ROOT = Path(__file__).resolve().parent.parent
# name -> (the class, whether its table includes the settings every process shares)
TABLES: dict[str, tuple[type[Settings], bool]] = {
    "common": (ProcessSettings, True),
    "api": (ApiSettings, False),
    "scheduler": (SchedulerSettings, False),
    "executor": (ExecutorSettings, False),
    "smtp": (SmtpSettings, True),
    "run_local": (RunLocalSettings, True),
}
MARKED = re.compile(
    r"(?P<open><!-- settings: (?P<name>[\w-]+)(?P<globs>(?: [^ >]+)*) -->\n)"
    r"(?P<table>.*?)(?P<close><!-- end settings -->)",
    re.DOTALL,
)


def documents() -> list[Path]:
    """The Markdown files that may hold settings tables."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def render(text: str) -> str:
    """``text`` with every marked table rewritten from the declarations."""

    def table(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in TABLES:
            raise ValueError(f"unknown settings table {name!r} (one of {', '.join(TABLES)})")
        cls, inherited = TABLES[name]
        globs = match["globs"].split()
        table = settings_table(
            cls,
            only=lambda variable: not globs or any(fnmatch.fnmatch(variable, g) for g in globs),
            inherited=inherited,
        )
        return f"{match['open']}{table}\n{match['close']}"

    return MARKED.sub(table, text)


def main() -> int:
    """Rewrite the tables in place; print the files that changed."""
    for path in documents():
        text = path.read_text()
        rendered = render(text)
        if rendered != text:
            path.write_text(rendered)
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
