"""Log lines: plain on a terminal, JSON lines with `--log-format json`.

Callers log an event name and fields (`log.info("planned", extra=fields(campaign=...))`);
the message is built from them. Fields carry ids and counts, never addresses or bodies.
"""

import json
import logging
import sys
import time
from typing import Any

_FIELDS = "herald_fields"


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call: structured fields that both formats show."""
    return {_FIELDS: values}


class _Plain(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created))
        extra = getattr(record, _FIELDS, {})
        campaign = extra.get("campaign")
        parts = [when, record.levelname.lower(), *([campaign + ":"] if campaign else [])]
        parts.append(record.getMessage())
        rest = " ".join(f"{k}={v}" for k, v in extra.items() if k != "campaign")
        line = " ".join(parts) + (f" ({rest})" if rest else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, _FIELDS, {}),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup(fmt: str = "plain", level: int = logging.INFO) -> None:
    """Send the engine's logs to stderr in `fmt` (plain or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Json() if fmt == "json" else _Plain())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "skipped: already running"
