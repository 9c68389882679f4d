"""A small loopback API that takes credentials other than an authorization code (SPEC §10).

- ``GET /me``: the caller's identity, for one API key (``Authorization: Bearer`` or
  ``X-Api-Key``), one basic pair (``EMAIL`` and its API token), or an access token minted below;
  401 for anything else.
- ``POST /token``: the ``client_credentials`` grant for one client (HTTP Basic client
  authentication), and the RFC 7523 ``jwt-bearer`` grant for one service account, whose
  assertion is verified with joserfc (signature by its public key, ``iss``, ``aud`` = this
  URL, ``exp``, the ``scope`` claim). Each minted token lives ``TOKEN_LIFETIME`` seconds.

A test may add accepted keys (a rotation: ``add_api_key``) and read how many tokens each grant
minted. The values are random per server and registered as secrets, so none may appear in any
process output (tests/support/outputs.py).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from joserfc.jwt import JWTClaimsRegistry

from tests.support import outputs
from tests.support.loopback import LoopbackServer, QuietHandler

KEY_API = "keyapi"
BASIC_API = "basicapi"
CC_API = "ccapi"
JWT_API = "jwtapi"
TOKEN_LIFETIME = 3600
EMAIL = "owner@keyapi.example"
SERVICE_ACCOUNT = "robot@jwtapi.example"
SCOPE = "read"


def _secret(kind: str, value: str) -> str:
    outputs.RECORD.add_secret(value, kind)
    return value


class CredentialsApi:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.api_keys: dict[str, str] = {}  # key -> account id
        self.api_key = self.add_api_key("acct-key-1")
        self.api_token = _secret("basic_password", "bt_" + secrets.token_urlsafe(24))
        self.client_id = "client-" + secrets.token_hex(4)
        self.client_secret = _secret("client_secret", "cs_" + secrets.token_urlsafe(24))
        self.signing_key = RSAKey.generate_key(2048)
        private_pem = self.signing_key.as_pem(private=True)
        self.private_key = _secret("private_key", private_pem.decode())
        for line in self.private_key.splitlines():  # a leak of any line of it is a leak
            if not line.startswith("-----"):
                _secret("private_key", line)
        self.minted: dict[str, str] = {}  # access token -> account id
        self.mints = {"client_credentials": 0, "jwt_bearer": 0}
        self.paths: list[str] = []
        self.outage: int | None = None  # while set, every call is answered with this status
        api = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                api.paths.append(self.path)
                if api.outage is not None:
                    self._answer(api.outage, {"error": "temporarily_unavailable"})
                    return
                if self.path.split("?")[0] != "/me":
                    self._answer(404, {"error": "not_found"})
                    return
                account = api.account_of(dict(self.headers.items()))
                if account is None:
                    self._answer(401, {"error": "unauthorized"})
                    return
                self._answer(200, {"id": account, "email": f"{account}@keyapi.example"})

            def do_POST(self) -> None:
                api.paths.append(self.path)
                length = int(self.headers.get("content-length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                if api.outage is not None:
                    self._answer(api.outage, {"error": "temporarily_unavailable"})
                    return
                status, body = api.token(form, dict(self.headers.items()))
                self._answer(status, body)

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = LoopbackServer(Handler)

    @property
    def url(self) -> str:
        return self.server.base_url

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @contextmanager
    def down(self, status: int = 503) -> Iterator[None]:
        """An outage: every call answered with ``status`` until the block ends."""
        self.outage = status
        try:
            yield
        finally:
            self.outage = None

    def add_api_key(self, account: str) -> str:
        key = _secret("api_key", "kk_" + secrets.token_urlsafe(24))
        with self.lock:
            self.api_keys[key] = account
        return key

    def revoke_api_key(self, key: str) -> None:
        with self.lock:
            self.api_keys.pop(key, None)

    def account_of(self, headers: dict[str, str]) -> str | None:
        lowered = {name.lower(): value for name, value in headers.items()}
        authorization = lowered.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        with self.lock:
            if scheme.lower() == "bearer":
                return self.api_keys.get(value) or self.minted.get(value)
            if scheme.lower() == "basic":
                user, _, password = base64.b64decode(value).decode().partition(":")
                ok = user == EMAIL and secrets.compare_digest(password, self.api_token)
                return "acct-basic" if ok else None
            return self.api_keys.get(lowered.get("x-api-key", ""))

    def token(self, form: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type")
        if grant == "client_credentials":
            lowered = {name.lower(): value for name, value in headers.items()}
            scheme, _, value = lowered.get("authorization", "").partition(" ")
            user, _, password = (
                base64.b64decode(value).decode().partition(":")
                if scheme.lower() == "basic"
                else ("", "", "")
            )
            if user != self.client_id or not secrets.compare_digest(password, self.client_secret):
                return 401, {"error": "invalid_client"}
            return 200, self._mint("client_credentials", "acct-client")
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                token = jwt.decode(
                    form.get("assertion", ""), self.signing_key, algorithms=["RS256"]
                )
                JWTClaimsRegistry(
                    iss={"essential": True, "value": SERVICE_ACCOUNT},
                    aud={"essential": True, "value": self.token_url},
                    exp={"essential": True},
                    scope={"essential": True, "value": SCOPE},
                ).validate(token.claims)
            except (JoseError, ValueError):
                return 400, {"error": "invalid_grant", "error_description": "bad assertion"}
            return 200, self._mint("jwt_bearer", "acct-robot")
        return 400, {"error": "unsupported_grant_type"}

    def _mint(self, grant: str, account: str) -> dict[str, Any]:
        access_token = _secret("access_token", "at_" + secrets.token_urlsafe(24))
        with self.lock:
            self.minted[access_token] = account
            self.mints[grant] += 1
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "scope": SCOPE,
            "issued": int(time.time()),
        }

    def entries(self) -> dict[str, dict[str, Any]]:
        """Catalog entries for the four modes, as an operator's providers file gives them."""
        me = f"{self.url}/me"
        identity = {"url": me, "id_path": "id", "email_path": "email", "name_path": "name"}
        return {
            KEY_API: {
                "display_name": "Key API",
                "auth_mode": "api_key",
                "api_base_url": self.url,
                "credentials": [
                    {
                        "name": "api_key",
                        "label": "API key",
                        "secret": True,
                        "pattern": "^kk_[A-Za-z0-9_-]{8,128}$",
                        "help_url": "https://keyapi.example/settings/keys",
                    }
                ],
                "api_auth": {"headers": {"Authorization": "Bearer {api_key}"}},
                "test_request": {"url": me, "headers": {"Authorization": "Bearer {api_key}"}},
                "userinfo": {**identity, "headers": {"Authorization": "Bearer {api_key}"}},
            },
            BASIC_API: {
                "display_name": "Basic API",
                "auth_mode": "basic",
                "api_base_url": self.url,
                "credentials": [
                    {"name": "email", "label": "Email", "secret": False},
                    {"name": "api_token", "label": "API token", "secret": True},
                ],
                "api_auth": {"basic": {"username": "{email}", "password": "{api_token}"}},
                "test_request": {"url": me},
            },
            CC_API: {
                "display_name": "Client Credentials API",
                "auth_mode": "oauth2_client_credentials",
                "token_url": self.token_url,
                "api_base_url": self.url,
                "default_scopes": [SCOPE],
                "credentials": [
                    {"name": "app_id", "label": "Client ID", "secret": False},
                    {"name": "app_secret", "label": "Client secret", "secret": True},
                ],
                "mint": {"client_id": "{app_id}", "client_secret": "{app_secret}"},
                "test_request": {"url": me},
            },
            JWT_API: {
                "display_name": "JWT Bearer API",
                "auth_mode": "jwt_bearer",
                "token_url": self.token_url,
                "api_base_url": self.url,
                "default_scopes": [SCOPE],
                "credentials": [
                    {"name": "client_email", "label": "Service account email", "secret": False},
                    {"name": "private_key", "label": "Private key (PEM)", "secret": True},
                ],
                "mint": {"assertion": {"claims": {"iss": "{client_email}"}, "scope_claim": True}},
                "userinfo": identity,
            },
        }

    def close(self) -> None:
        self.server.close()
