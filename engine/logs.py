"""Log lines: plain on a terminal, JSON lines with `--log-format json`.

Callers log an event name and fields (`log.info("planned", extra=fields(campaign=...))`);
the message is built from them. Fields carry ids and counts, never addresses or bodies.
Plain lines escape control characters, so no value can forge a line or move the cursor.
"""

import json
import logging
import re
import sys
import time
from typing import Any

_FIELDS = "herald_fields"
# C0 and C1 controls (newlines, ANSI escapes) and lone surrogates, which no stream encodes.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def escape(text: str) -> str:
    """`text` with every control character and lone surrogate written as an escape."""
    return _UNSAFE.sub(
        lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 256 else f"\\u{ord(m[0]):04x}", text
    )


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call: structured fields that both formats show."""
    return {_FIELDS: values}


class _Plain(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created))
        extra = getattr(record, _FIELDS, {})
        campaign = extra.get("campaign")
        parts = [when, record.levelname.lower(), *([f"{campaign}:"] if campaign else [])]
        parts.append(record.getMessage())
        rest = " ".join(f"{k}={v}" for k, v in extra.items() if k != "campaign")
        parts, rest = [escape(p) for p in parts], escape(rest)
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
        return _escape_surrogates(json.dumps(entry, ensure_ascii=False, default=str))


def _escape_surrogates(text: str) -> str:
    # JSON escapes control characters itself, but leaves a lone surrogate unencodable.
    return re.sub(r"[\ud800-\udfff]", lambda m: f"\\u{ord(m[0]):04x}", text)


def setup(fmt: str = "plain", level: int = logging.INFO) -> None:
    """Send the engine's logs to stderr in `fmt` (plain or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Json() if fmt == "json" else _Plain())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "skipped: already running"
