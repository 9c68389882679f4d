"""Two more real oidc-provider instances for the grants beyond the redirect flow.

- ``device-oidc``: the device authorization grant (RFC 8628) and *optional* PAR (RFC 9126).
  Its token endpoint is reached through a ``CannedProxy``, so a test can make it answer the
  ``slow_down`` that oidc-provider itself never sends, and count the polls that reached it.
- ``par-oidc``: PAR *required*; an authorization request that was not pushed is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tests.support.fault_proxy import FaultProxy
from tests.support.oidc import OidcProvider

DEVICE_KEY = "device-oidc"
PAR_KEY = "par-oidc"
DEVICE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
SCOPES = ["openid", "email", "profile", "offline_access"]


class CannedProxy(FaultProxy):
    """A fault proxy that can also answer an OAuth error of the test's choosing (HTTP 400)."""

    oauth_error: str | None = None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        error = self.oauth_error
        if error is None:
            return super()._serve(handler)
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.hits[path] += 1
        length = int(handler.headers.get("content-length") or 0)
        if length:
            handler.rfile.read(length)
        body = json.dumps({"error": error, "error_description": "canned by the test"}).encode()
        return self._reply(handler, 400, body, "application/json")


@dataclass
class GrantProviders:
    device: OidcProvider
    par: OidcProvider
    device_proxy: CannedProxy

    @property
    def keys(self) -> tuple[str, str]:
        return (DEVICE_KEY, PAR_KEY)

    def entries(self) -> dict[str, dict[str, object]]:
        """Providers-file entries: everything discovered except the proxied token endpoint."""
        return {
            DEVICE_KEY: {
                "display_name": "Device OIDC",
                "discovery_url": self.device.discovery_url,
                "token_url": f"{self.device_proxy.url}/token",
                "default_scopes": SCOPES,
                "authorization_params": {"prompt": "consent"},
            },
            PAR_KEY: {
                "display_name": "PAR OIDC",
                "discovery_url": self.par.discovery_url,
                "default_scopes": SCOPES,
                "authorization_params": {"prompt": "consent"},
            },
        }

    def stop(self) -> None:
        self.device_proxy.close()
        self.device.stop()
        self.par.stop()


def start_grant_providers(
    client_id: str, client_secret: str, redirect_uris: list[str], workdir: Path
) -> GrantProviders:
    client = {
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uris": redirect_uris,
        "token_endpoint_auth_method": "client_secret_basic",
    }
    device = OidcProvider.start(
        [{**client, "grant_types": ["authorization_code", "refresh_token", DEVICE_GRANT_TYPE]}],
        features={"device_flow": True, "par": True},
        workdir=workdir / "device",
    )
    try:
        par = OidcProvider.start(
            [{**client, "grant_types": ["authorization_code", "refresh_token"]}],
            features={"require_par": True},
            workdir=workdir / "par",
        )
    except BaseException:
        device.stop()
        raise
    return GrantProviders(device, par, CannedProxy(device.issuer))
