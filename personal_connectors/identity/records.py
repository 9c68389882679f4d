"""What authenticating a caller reads of an API key, as a plain record.

The token route reads the key with the connection in one statement (``tokens.records`` says
why those columns come back as named tuples); ``principal_of`` checks such a record and a model
instance alike (``KeyLike``).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from personal_connectors.models import APIKey


class KeyRecord(NamedTuple):
    """An API key's columns that ``principal_of`` checks."""

    id: str
    user_id: str | None
    key_hash: str
    status: str
    expires_at: datetime | None
    kind: str
    organization_id: str | None


KeyLike = APIKey | KeyRecord
