"""The proxy's verbs, written once for the sync and the async client: each subclass only says
how ``request`` sends (returning an ``httpx.Response``, or an awaitable of one)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar, Unpack

from personal_connectors.client.core import ProxyOptions

R = TypeVar("R")


class ProxyVerbs(ABC, Generic[R]):
    """Calls to one connection's provider API through ``/{id}/proxy/{path}`` (SPEC §9).

    ``path`` is relative to the provider's API base (``"/user"``, ``"repos/o/r/issues"``);
    ``params``, ``headers`` and the body go to the provider. The provider's answer comes back
    as an ``httpx.Response`` whatever its status (``X-Connectors-Proxy: upstream`` on it); a
    refusal of the service itself raises ``ConnectorsError``.
    """

    @abstractmethod
    def request(self, method: str, path: str, **options: Unpack[ProxyOptions]) -> R: ...

    def get(self, path: str, **options: Unpack[ProxyOptions]) -> R:
        return self.request("GET", path, **options)

    def post(self, path: str, **options: Unpack[ProxyOptions]) -> R:
        return self.request("POST", path, **options)

    def put(self, path: str, **options: Unpack[ProxyOptions]) -> R:
        return self.request("PUT", path, **options)

    def patch(self, path: str, **options: Unpack[ProxyOptions]) -> R:
        return self.request("PATCH", path, **options)

    def delete(self, path: str, **options: Unpack[ProxyOptions]) -> R:
        return self.request("DELETE", path, **options)
