"""Every HTTP call the service makes to someone else: one pooled client, one guard.

- ``addresses``: which IP addresses a call may connect to (no internal ones).
- ``guard``: the network backend that resolves a host, judges every address and connects to a
  judged one; ``DestinationRefused`` when it may not.
- ``transport``: the httpx transport over httpcore's pool with that backend.
- ``client``: the one ``httpx.AsyncClient`` of a process (``Runtime`` owns it).

The guard applies to every call alike, URLs the operator wrote in the providers file included:
at connection time a discovered endpoint, a templated host and an operator's literal are the
same request, and one rule leaves nothing to get wrong. Hosts are chosen by the operator or an
owner or admin (``providers.schema.IntegrationParam.set_by``), never by a member. An operator
whose providers or receivers are internal sets ``CONNECTORS_OUTBOUND_ALLOW_INTERNAL``.
"""
