"""A bounded in-process cache whose entries hold while their stamp matches and their time lasts.

The stamp is read from the database row the value was derived from (a version, flags): any
worker that changes the row changes the stamp, so every process drops the value on its next
read, with no message between processes. The time bounds what the row cannot tell (the remote
side changed).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

DEFAULT_MAX_ENTRIES = 10_000


class StampedCache(Generic[V]):
    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._entries: OrderedDict[str, tuple[Hashable, float, V]] = OrderedDict()
        self._max_entries = max_entries

    def get(self, key: str, stamp: Hashable) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        kept_stamp, until, value = found
        if kept_stamp != stamp or time.monotonic() >= until:
            del self._entries[key]
            return None
        return value

    def put(self, key: str, stamp: Hashable, value: V, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            return
        self._entries[key] = (stamp, time.monotonic() + ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)  # the oldest written

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)
