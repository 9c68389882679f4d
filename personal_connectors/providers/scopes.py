"""What a scope a caller names looks like: one rule for every place that takes scopes from a
request (``POST /authorize``'s ``scopes``, the token route's ``required_scopes``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

# RFC 6749 §3.3: printable ASCII, no spaces (a space separates scopes).
SCOPE_PATTERN = r"^[\x21-\x7e]+$"
SCOPE_MAX_LENGTH = 200
# How many scopes one request may name.
MAX_SCOPES = 50

Scope = Annotated[
    str, StringConstraints(min_length=1, max_length=SCOPE_MAX_LENGTH, pattern=SCOPE_PATTERN)
]
