"""Structured, quiet-by-default logging.

Call sites pass fields with ``extra={"fields": {...}}``; the text format renders them
as ``key=value`` after the message, the JSON format as object members.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{ts}.{int(record.msecs):03d}Z {record.levelname.lower():7s} {record.name}: "
        line += record.getMessage()
        fields: dict[str, Any] = getattr(record, "fields", None) or {}
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or text == "") else text


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger("portask")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # Third-party libraries stay at warning so the default output is the broker's own.
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
