"""Connection errors."""

from __future__ import annotations

from personal_connectors.exceptions import ResourceNotFound


class ConnectionNotFound(ResourceNotFound):
    """Foreign, deleted and unknown connections look the same: never a hint that one exists."""

    def __init__(self) -> None:
        super().__init__("No such connection.")
