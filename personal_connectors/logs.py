"""Logging set-up with a last line of defence: secrets are redacted from every record.

The code never logs a token, code, state or key on purpose; this filter catches the accidents
(an exception message quoting a URL, a library logging a request) before they reach a handler.

Two formats (``CONNECTORS_LOG_FORMAT``): ``text``, a line a record, and ``json``, one JSON object
a line (``JsonFormatter``) with the time, level, logger, message, process id, the trace id of the
request being served (``TRACE_ID``, set by ``http.context``) and the fields a record carries
beyond the standard ones (the access log's route, status and duration). Both go through the same
redaction.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_PATTERNS = [
    (re.compile(r"\bak_[A-Za-z0-9]{8,}"), "ak_[REDACTED]"),
    (re.compile(r"\bstate_[A-Za-z0-9_\-]{8,}"), "state_[REDACTED]"),
    # Connect-session tokens, flow launch tokens and browser-binding secrets (connect/, flows/).
    (re.compile(r"\b(cs|lt|fb)_[A-Za-z0-9_\-]{8,}"), r"\1_[REDACTED]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}"), "whsec_[REDACTED]"),  # webhook signing secrets
    # A URL's user-info part (scheme://user:password@host, or a bare token: scheme://TOKEN@host).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@]+@"), r"\1[REDACTED]@"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/\-=]+"), r"\1 [REDACTED]"),
    (
        re.compile(
            r"(?i)\b(access_token|refresh_token|id_token|client_secret|code_verifier|code|state|"
            r"token|password|secret|assertion)(\"?\s*[=:]\s*\"?)[^\s&\",;]+"
        ),
        r"\1\2[REDACTED]",
    ),
]


# Every pattern above needs one of these (lower-cased) to match: an ASCII text holding none of
# them is left as it is without running the seven scans. That is every access-log line, so the
# check keeps the filter off the cost of a request. Only ASCII: a case-blind pattern also
# matches some other letters (U+017F for "s", U+0131 for "i") that lower-casing leaves alone.
# ``tests/test_no_secrets_in_logs.py`` holds the list to the patterns.
MARKERS = ("ak_", "state_", "cs_", "lt_", "fb_", "whsec_", "bearer", "basic", "=", ":")


def redact(text: str) -> str:
    if text.isascii():
        lowered = text.lower()
        if not any(marker in lowered for marker in MARKERS):
            return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.msg = redact(message)
        record.args = None
        return True


# The trace id (``req_…``, the error envelope's ``trace_id``) of the request this code serves.
TRACE_ID: ContextVar[str | None] = ContextVar("trace_id", default=None)
# What every LogRecord has; anything else on a record came from ``extra=`` and is logged as a
# field of its own in JSON ("message" and "asctime" are set by formatting).
# uvicorn's "color_message" is its message again with terminal colours.
_STANDARD_ATTRIBUTES = frozenset(
    {
        *logging.LogRecord("", 0, "", 0, "", None, None).__dict__,
        "message",
        "asctime",
        "taskName",
        "color_message",
    }
)


class JsonFormatter(logging.Formatter):
    """One JSON object a record; string fields from ``extra=`` are redacted like the message
    (which ``RedactingFilter`` has already redacted)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,  # which worker of `serve --workers N`
        }
        trace_id = TRACE_ID.get()
        if trace_id is not None:
            line["trace_id"] = trace_id
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRIBUTES:
                line[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Uvicorn's access log prints the query string (the callback's code and state): ours does not.
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # Libraries that log request lines or SQL parameters (sealed blobs, URLs) at DEBUG stay quiet
    # even when the service's own level is DEBUG.
    # (urllib3: the OTLP exporter's requests, a line per batch of spans sent. httpx2 and mcp:
    # the MCP SDK's client logs every request's URL at INFO and every message at DEBUG, which
    # carry what users' servers are sent and answer.)
    for name in (
        "httpx",
        "httpcore",
        "httpx2",
        "mcp",
        "aiosqlite",
        "asyncpg",
        "sqlalchemy.engine",
        "urllib3",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
