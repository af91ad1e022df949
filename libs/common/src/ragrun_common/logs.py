"""JSON log lines on stdout in the shape Cloud Logging understands.

Each record becomes one JSON object with ``severity``, ``message``, ``time``,
the logger name, and ``logging.googleapis.com/labels`` from ``extra={"labels": ...}``.
Other ``extra`` keys given as ``extra={"fields": {...}}`` are merged at the top
level so they can be queried (counts, durations). Call sites use constant event
names and lazy ``%`` arguments, never f-strings.

Inside an OpenTelemetry span, :class:`TraceContextFilter` adds the span's
trace (``logging.googleapis.com/trace`` = ``projects/PROJECT/traces/TRACE_ID``),
``spanId`` and ``trace_sampled``, so Cloud Logging shows a document's log lines
under its trace in Cloud Trace, and one trace id finds them across services.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

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
        for key in ("trace", "spanId", "trace_sampled"):
            value = getattr(record, key, None)
            if value:
                entry[f"logging.googleapis.com/{key}"] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TraceContextFilter(logging.Filter):
    """Fills a record's ``trace``, ``spanId`` and ``trace_sampled`` from the current span."""

    def __init__(self, project: str) -> None:
        super().__init__()
        self._project = project

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid and not getattr(record, "trace", None):
            record.trace = f"projects/{self._project}/traces/{context.trace_id:032x}"
            record.spanId = f"{context.span_id:016x}"
            record.trace_sampled = context.trace_flags.sampled
        return True


def configure_logging(service: str, level: str = "INFO", project: str | None = None) -> None:
    """Send every log record of this process to stdout as Cloud Logging JSON.

    With ``project`` (the Google Cloud project traces go to), records logged
    inside a span carry its trace and span ids.
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter(service))
    if project:
        handler.addFilter(TraceContextFilter(project))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "google.auth", "google.api_core", "httpx", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
