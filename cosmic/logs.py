"""Log output: human-readable lines by default, or JSON lines (``COSMIC_LOG__FORMAT=json``).

A JSON line carries ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``service``,
``message``, and where the call gave them (``extra={"world": ..., "tick": ...}``)
``world``, ``tick`` and ``trace_id``; a line logged while a span is current
(:mod:`cosmic.tracing`) carries its ``trace_id`` and ``span_id`` unless the call
named a trace itself; an exception adds ``error`` with its traceback. Every
command's ``main`` calls :func:`configure` once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from cosmic.settings import Settings
from cosmic.tracing import current_ids

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Context a log call may pass with ``extra=``; copied into the JSON line when present.
CONTEXT_FIELDS = ("world", "tick", "partition", "trace_id")


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "service": self.service,
            "message": record.getMessage()}
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if "trace_id" not in line and (ids := current_ids()) is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(settings: Settings, service: str) -> None:
    """Set the root logger's format and level from ``settings.log`` (replacing handlers)."""
    handler = logging.StreamHandler()
    if settings.log.format == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log.level.upper())
