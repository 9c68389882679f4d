"""Every HTTP call the service makes to someone else: one pooled client, one guard.

- ``addresses``: which IP addresses a call may connect to (no internal ones).
- ``guard``: the network backend that resolves a host, judges every address and connects to a
  judged one; ``DestinationRefused`` when it may not.
- ``transport``: the httpx transport over httpcore's pool with that backend.
- ``client``: the one ``httpx.AsyncClient`` of a process (``Runtime`` owns it).
"""
