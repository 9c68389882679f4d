"""Logging set-up with a last line of defence: secrets are redacted from every record.

The code never logs a token, code, state or key on purpose; this filter catches the accidents
(an exception message quoting a URL, a library logging a request) before they reach a handler.
"""

from __future__ import annotations

import logging
import re
import sys

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


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
    for name in ("httpx", "httpcore", "aiosqlite", "asyncpg", "sqlalchemy.engine"):
        logging.getLogger(name).setLevel(logging.WARNING)
