"""Logging set-up shared by every process: one line per event, text for people or JSON for machines.

LOG_LEVEL (default INFO) and LOG_FORMAT (text | json) choose. Extra fields given with
``logger.info("...", extra={"job_id": 1, "type": "echo"})`` appear in both formats.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

__all__ = ["LOG_FIELDS", "configure_logging"]

# Context fields a log call may pass in ``extra``; both formatters show them.
LOG_FIELDS = ("job_id", "type", "attempt", "trace_id", "worker", "count")


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in LOG_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)-7s {service} %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{name}={getattr(record, name)}" for name in LOG_FIELDS if hasattr(record, name))
        return f"{line} [{fields}]" if fields else line


def configure_logging(service: str, level: str = "INFO", log_format: str = "text") -> None:
    """Send every log record to stderr in the chosen format; replaces earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if log_format == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
