"""JSON log lines on stdout in the shape Cloud Logging understands.

Each record becomes one JSON object with ``severity``, ``message``, ``time``,
the logger name, and ``logging.googleapis.com/labels`` from ``extra={"labels": ...}``.
Other ``extra`` keys given as ``extra={"fields": {...}}`` are merged at the top
level so they can be queried (counts, durations). Call sites use constant event
names and lazy ``%`` arguments, never f-strings.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


class CloudLoggingFormatter(logging.Formatter):
    """Formats a record as one line of Cloud Logging structured JSON."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
            "service": self._service,
        }
        labels = getattr(record, "labels", None)
        if labels:
            entry["logging.googleapis.com/labels"] = {k: str(v) for k, v in labels.items()}
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        for key in ("trace", "spanId"):
            value = getattr(record, key, None)
            if value:
                entry[f"logging.googleapis.com/{key}"] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record of this process to stdout as Cloud Logging JSON."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "google.auth", "google.api_core", "httpx", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
