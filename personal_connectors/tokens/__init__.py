"""A connection's tokens: sealed at rest (``vault``)."""
