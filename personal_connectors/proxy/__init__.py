"""Calling a provider's API through the service (SPEC §9): ``/{connection_id}/proxy/{path}``.

- ``upstream``: where a call goes (the entry's ``api_base_url``, filled and checked) and which
  ``{path}`` and query may be joined to it.
- ``headers``: which request and response headers cross, and which come back renamed.
- ``service``: the call itself: credentials, streaming, the refresh on 401, retries, limits.
- ``endpoints``: the route.
"""
