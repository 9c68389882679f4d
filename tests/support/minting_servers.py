"""Real token servers for the minting modes of SPEC §10, next to the hand-made
tests/support/credentials_api.py.

- ``machine_clients`` / ``start_machine_oidc``: panva's oidc-provider with its client
  credentials grant on, one machine client (``grant_types: ["client_credentials"]``) and one
  client for the protected resource below, which asks the provider about tokens (RFC 7662).
- ``MintingServers``: one Starlette app under uvicorn in a thread of the test process:

  - ``/rfc7523/token``: an RFC 7523 authorization server made of Authlib's classes
    (``AuthorizationServer`` with ``JWTBearerGrant``): the assertion's signature is verified
    with the service account's registered public key, then ``iss``, ``sub``, ``aud`` (this
    URL) and ``exp``; each accepted assertion gets a fresh bearer token.
  - ``/rfc7523/me``: a resource behind Authlib's ``ResourceProtector`` with a
    ``BearerTokenValidator`` over the tokens that server issued.
  - ``/oidc/me``: a resource behind Authlib's ``IntrospectTokenValidator``: every bearer token
    is checked at the OpenID provider's introspection endpoint.

  Both ``/me`` answer ``{"id": <client or subject>}`` for a live token, else 401.

Every secret here (client secrets, the private key and each of its lines, issued tokens) is
registered with tests/support/outputs.py, so none may appear in any process's output.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2 import OAuth2Error, ResourceProtector
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    OAuth2Payload,
    OAuth2Request,
    TokenMixin,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc7523 import JWTBearerGrant
from authlib.oauth2.rfc7662 import IntrospectTokenValidator
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support import outputs, web
from tests.support.loopback import ThreadedUvicorn
from tests.support.oidc import OidcProvider

# The catalog keys of the test entries (tests/conftest.py writes them to the providers file).
OIDC_CC_KEY = "oidc-machine"
# The same client asking for a scope the provider does not know besides its own (it grants the
# known one and says so), and asking for none (it grants none and sends no `scope`).
OIDC_CC_NARROWED_KEY = "oidc-machine-narrowed"
OIDC_CC_UNSCOPED_KEY = "oidc-machine-unscoped"
UNKNOWN_SCOPE = "unknown.scope"
RFC7523_KEY = "rfc7523-api"
MACHINE_CLIENT_ID = "pc-machine-client"
RESOURCE_CLIENT_ID = "pc-resource-server"
SERVICE_ACCOUNT = "robot@rfc7523.example"
SCOPE = "api.read"
TOKEN_LIFETIME = 3600


@dataclass(frozen=True)
class MachineSecrets:
    """The machine client's and the resource server's secrets at the OpenID provider."""

    client_secret: str = field(default_factory=lambda: "mc_" + secrets.token_urlsafe(24))
    resource_secret: str = field(default_factory=lambda: "rs_" + secrets.token_urlsafe(24))


def machine_clients(machine: MachineSecrets) -> list[dict[str, Any]]:
    """oidc-provider client metadata: no redirect, no authorization code, tokens by secret."""
    common = {"redirect_uris": [], "response_types": [], "grant_types": ["client_credentials"]}
    return [
        {
            **common,
            "client_id": MACHINE_CLIENT_ID,
            "client_secret": machine.client_secret,
            "token_endpoint_auth_method": "client_secret_basic",
        },
        {
            **common,
            "client_id": RESOURCE_CLIENT_ID,
            "client_secret": machine.resource_secret,
            "token_endpoint_auth_method": "client_secret_basic",
        },
    ]


def start_machine_oidc(machine: MachineSecrets, workdir: Path) -> OidcProvider:
    return OidcProvider.start(
        machine_clients(machine),
        features={"client_credentials": True},
        extra_scopes=[SCOPE],
        workdir=workdir,
    )


# --- The RFC 7523 authorization server (Authlib) ---------------------------------------------


@dataclass
class ServiceAccount(ClientMixin):  # type: ignore[misc]
    """A registered RFC 7523 client: its ``iss`` and the public key its assertions verify with."""

    client_id: str
    public_key: RSAKey

    def get_client_id(self) -> str:
        return self.client_id

    def check_grant_type(self, grant_type: str) -> bool:
        return bool(grant_type == JWTBearerGrant.GRANT_TYPE)

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in (scope or "").split() if s == SCOPE)


@dataclass
class IssuedToken(TokenMixin):  # type: ignore[misc]
    client_id: str
    subject: str
    scope: str
    issued_at: float
    expires_in: int
    revoked: bool = False

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked


class Rfc7523Grant(JWTBearerGrant):  # type: ignore[misc]
    def resolve_issuer_client(self, issuer: str) -> ServiceAccount | None:
        return self.server.accounts.get(issuer)  # type: ignore[no-any-return]

    def resolve_client_public_key(self, client: ServiceAccount) -> RSAKey:
        return client.public_key

    def authenticate_user(self, subject: str) -> str | None:
        # A service account acts as itself (no delegation to other users is registered).
        return subject if subject in self.server.accounts else None

    def has_granted_permission(self, client: ServiceAccount, user: str) -> bool:
        return bool(user == client.client_id)

    def get_audiences(self) -> list[str]:
        return [self.server.token_url]


class _Form(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, form: dict[str, str]) -> None:
        self._form = form

    @property
    def data(self) -> dict[str, str]:
        return self._form

    @property
    def datalist(self) -> dict[str, list[str]]:
        return {name: [value] for name, value in self._form.items()}


class _Request(OAuth2Request):  # type: ignore[misc]
    """Authlib's request over a form already read by Starlette (the minimal adapter)."""

    def __init__(self, method: str, uri: str, headers: dict[str, str], form: dict[str, str]):
        super().__init__(method, uri, headers=headers)
        self._form = form
        self.payload = _Form(form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


def _new_token(**_: Any) -> str:
    token = "at_" + secrets.token_urlsafe(32)
    outputs.RECORD.add_secret(token, "access_token")
    return token


class Rfc7523Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, token_url: str) -> None:
        super().__init__(scopes_supported=[SCOPE])
        self.token_url = token_url
        self.accounts: dict[str, ServiceAccount] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.lock = threading.Lock()
        self.register_grant(Rfc7523Grant)
        self.register_token_generator(
            "default", BearerTokenGenerator(_new_token, expires_generator=TOKEN_LIFETIME)
        )

    def query_client(self, client_id: str) -> ServiceAccount | None:
        return self.accounts.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        with self.lock:
            self.tokens[token["access_token"]] = IssuedToken(
                client_id=request.client.get_client_id(),
                subject=request.user,
                scope=token.get("scope", ""),
                issued_at=time.time(),
                expires_in=int(token["expires_in"]),
            )

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> Response:
        return JSONResponse(body, status_code=status, headers=dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class _IssuedTokens(BearerTokenValidator):  # type: ignore[misc]
    def __init__(self, server: Rfc7523Server) -> None:
        super().__init__()
        self.server = server

    def authenticate_token(self, token_string: str) -> IssuedToken | None:
        with self.server.lock:
            return self.server.tokens.get(token_string)


class _Introspected(IntrospectTokenValidator):  # type: ignore[misc]
    def __init__(self, introspection_url: str, machine: MachineSecrets) -> None:
        super().__init__()
        self.url = introspection_url
        self.machine = machine

    def introspect_token(self, token_string: str) -> dict[str, Any]:
        response = web.post(
            self.url,
            data={"token": token_string, "token_type_hint": "access_token"},
            auth=(RESOURCE_CLIENT_ID, self.machine.resource_secret),
            timeout=10.0,
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer


# --- The app ---------------------------------------------------------------------------------


class MintingServers:
    """The RFC 7523 server and both protected resources, on one free loopback port."""

    def __init__(self, machine_oidc: OidcProvider, machine: MachineSecrets) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.machine_oidc = machine_oidc
        self.machine = machine
        self.rfc7523 = Rfc7523Server(f"{self.url}/rfc7523/token")
        self.account_key = RSAKey.generate_key(2048)
        self.private_key = self.account_key.as_pem(private=True).decode()
        outputs.RECORD.add_secret(self.private_key, "private_key")
        for line in self.private_key.splitlines():  # a leak of any line of it is a leak
            if not line.startswith("-----"):
                outputs.RECORD.add_secret(line, "private_key")
        public = RSAKey.import_key(self.account_key.as_dict(private=False))
        self.rfc7523.accounts[SERVICE_ACCOUNT] = ServiceAccount(SERVICE_ACCOUNT, public)
        self.rfc7523_protector = ResourceProtector()
        self.rfc7523_protector.register_token_validator(_IssuedTokens(self.rfc7523))
        self.oidc_protector = ResourceProtector()
        introspection = machine_oidc.metadata["introspection_endpoint"]
        self.oidc_protector.register_token_validator(_Introspected(introspection, machine))
        self.app = Starlette(
            routes=[
                Route("/rfc7523/token", self._token, methods=["POST"]),
                Route("/rfc7523/me", self._rfc7523_me),
                Route("/oidc/me", self._oidc_me),
            ]
        )
        self._server = ThreadedUvicorn(self.app, sock=self._socket, lifespan="off")

    @property
    def rfc7523_minted(self) -> int:
        """How many tokens the RFC 7523 server issued."""
        with self.rfc7523.lock:
            return len(self.rfc7523.tokens)

    def rfc7523_subject(self, token: str) -> str | None:
        with self.rfc7523.lock:
            issued = self.rfc7523.tokens.get(token)
        return issued.subject if issued is not None else None

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        oauth_request = _Request(request.method, str(request.url), dict(request.headers), form)
        response: Response = self.rfc7523.create_token_response(oauth_request)
        return response

    def _protected(self, protector: ResourceProtector, request: Request) -> IssuedToken | Any:
        oauth_request = _Request(request.method, str(request.url), dict(request.headers), {})
        oauth_request.headers = {"Authorization": request.headers.get("authorization", "")}
        return protector.validate_request([], oauth_request)

    def _rfc7523_me(self, request: Request) -> Response:
        try:
            token = self._protected(self.rfc7523_protector, request)
        except OAuth2Error as error:
            return JSONResponse({"error": error.error}, status_code=401)
        return JSONResponse({"id": token.subject, "client_id": token.client_id})

    def _oidc_me(self, request: Request) -> Response:
        try:
            token = self._protected(self.oidc_protector, request)
        except OAuth2Error as error:
            return JSONResponse({"error": error.error}, status_code=401)
        return JSONResponse({"id": token["client_id"], "scope": token.get("scope")})

    def start(self) -> MintingServers:
        self._server.start()
        return self

    def close(self) -> None:
        self._server.stop()
        self._socket.close()

    def entries(self) -> dict[str, dict[str, Any]]:
        """Catalog entries for both servers, as an operator's providers file gives them."""
        machine = self._machine_entry()
        return {
            OIDC_CC_KEY: machine,
            OIDC_CC_NARROWED_KEY: {**machine, "default_scopes": [SCOPE, UNKNOWN_SCOPE]},
            OIDC_CC_UNSCOPED_KEY: {**machine, "default_scopes": []},
            RFC7523_KEY: self._rfc7523_entry(),
        }

    def _machine_entry(self) -> dict[str, Any]:
        return {
            "display_name": "Machine OIDC",
            "auth_mode": "oauth2_client_credentials",
            "token_url": self.machine_oidc.metadata["token_endpoint"],
            "token_endpoint_auth_method": "client_secret_basic",
            "api_base_url": f"{self.url}/oidc",
            "default_scopes": [SCOPE],
            "credentials": [
                {"name": "app_id", "label": "Client ID", "secret": False},
                {"name": "app_secret", "label": "Client secret", "secret": True},
            ],
            "mint": {"client_id": "{app_id}", "client_secret": "{app_secret}"},
            # The protected resource, which asks the provider whether the token is live.
            "test_request": {"url": f"{self.url}/oidc/me"},
            "userinfo": {"url": f"{self.url}/oidc/me", "id_path": "id"},
        }

    def _rfc7523_entry(self) -> dict[str, Any]:
        return {
            "display_name": "RFC 7523 API",
            "auth_mode": "jwt_bearer",
            "token_url": self.rfc7523.token_url,
            "api_base_url": f"{self.url}/rfc7523",
            "default_scopes": [SCOPE],
            "credentials": [
                {"name": "client_email", "label": "Service account", "secret": False},
                {"name": "private_key", "label": "Private key (PEM)", "secret": True},
            ],
            # RFC 7523 §2.1: scope as the token request's parameter, the account as iss/sub.
            "mint": {
                "assertion": {
                    "claims": {"iss": "{client_email}", "sub": "{client_email}"},
                }
            },
            "test_request": {"url": f"{self.url}/rfc7523/me"},
            "userinfo": {"url": f"{self.url}/rfc7523/me", "id_path": "id"},
        }
