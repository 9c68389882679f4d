"""A small loopback OAuth provider that shows the quirks no real local server shows.

One server, several *profiles* under path prefixes, each shaped like a real provider:

- ``slackish``: the user token nested under ``authed_user``, a bot ``token_type``, the
  workspace in ``team``; revocation is ``GET auth.revoke`` with the token as bearer.
- ``githubish``: a form-encoded token answer without ``expires_in`` or a refresh token; ``/user``
  has a null e-mail and ``/user/emails`` lists the addresses (the primary verified one is
  ``o@example.test``); revocation is ``DELETE /applications/{client_id}/grant`` with Basic
  client auth and a JSON body naming the token.
- ``salesforceish``: no ``expires_in`` (the entry's default lifetime applies), ``instance_url``
  in the answer and ``realmId`` on the redirect back; refreshes go to a separate URL and bring
  no new refresh token; revocation is a form POST with the client secret, a version header and
  a metadata value.
- ``rotating``, ``rotating-grace``, ``shortlived``: refresh-token rotation with reuse detection
  (a rotated refresh token presented again revokes the whole grant), as Okta, Auth0 and Ory
  Hydra do; ``rotating-grace`` accepts a rotated token again for ``GRACE_SECONDS`` (their grace
  period), ``shortlived`` issues access tokens living ``SHORT_LIFETIME`` seconds. Each grant is
  its own account. ``cut_refreshes`` makes the next refreshes end in a TCP reset after they
  were processed: the rotated refresh token never reaches the service.

Authorization needs no login: ``/{profile}/authorize`` redirects straight back with a code.
Every request is recorded (``calls``) so a test can check how the service called the provider.
Tokens are fake; they still never appear in the server's output.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.support import outputs
from tests.support.loopback import LoopbackServer, QuietHandler

GRACE_SECONDS = 30
SHORT_LIFETIME = 3
# Rotating profiles: (access token lifetime, grace period for a rotated refresh token).
ROTATING = {"rotating": (3600, 0), "rotating-grace": (3600, GRACE_SECONDS), "shortlived": (3, 0)}
PROFILES = ("slackish", "githubish", "salesforceish", *ROTATING)
INSTANCE_URL = "https://acme.my.salesforce.example"
REALM_ID = "9130355"
TEAM = {"id": "T0123", "name": "Acme Workspace"}


@dataclass(frozen=True)
class RecordedCall:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body))

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.lower().startswith("basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[7:] if value.lower().startswith("bearer ") else None


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False  # processed, but the client gets a connection reset instead


@dataclass
class _Grant:
    """One authorization at a rotating profile: its live refresh token and the rotated ones."""

    number: int
    profile: str
    live_refresh: str
    rotated: dict[str, float] = field(default_factory=dict)  # token -> when (monotonic)
    access: set[str] = field(default_factory=set)
    revoked: bool = False


def _json(status: int, payload: Any) -> _Reply:
    return _Reply(status, json.dumps(payload).encode())


class FakeProvider:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.calls: list[RecordedCall] = []
        self._codes: dict[str, str] = {}  # code -> profile (single use)
        self._access: dict[str, str] = {}  # live access token -> profile
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        self._grants: dict[str, _Grant] = {}  # every refresh token ever issued -> its grant
        self._grant_of_access: dict[str, _Grant] = {}
        self._cut = 0
        self.refreshes: dict[str, int] = dict.fromkeys(ROTATING, 0)  # answered, per profile
        provider = self

        class Handler(QuietHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                parts = urlsplit(self.path)
                call = RecordedCall(
                    self.command,
                    parts.path,
                    dict(parse_qsl(parts.query, keep_blank_values=True)),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                reply = provider._answer(call)
                if reply.reset:
                    self.close_connection = True
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_DELETE = _handle

        self._server = LoopbackServer(Handler)

    @property
    def url(self) -> str:
        return self._server.base_url

    def close(self) -> None:
        self._server.close()

    def calls_to(
        self, profile: str, endpoint: str, method: str | None = None
    ) -> list[RecordedCall]:
        path = f"/{profile}/{endpoint}"
        with self._lock:
            return [
                call
                for call in self.calls
                if call.path == path and (method is None or call.method == method)
            ]

    def is_live(self, access_token: str) -> bool:
        with self._lock:
            return access_token in self._access

    def cut_refreshes(self, count: int) -> None:
        """The next ``count`` refreshes at a rotating profile are processed (rotated), then
        their connection is reset before any answer."""
        with self._lock:
            self._cut = count

    def grant_alive(self, access_token: str) -> bool:
        """Whether the grant ``access_token`` came from still stands (not revoked on reuse)."""
        with self._lock:
            grant = self._grant_of_access.get(access_token)
            return grant is not None and not grant.revoked

    # --- behaviour ----------------------------------------------------------------------------

    def _answer(self, call: RecordedCall) -> _Reply:
        with self._lock:
            self.calls.append(call)
        profile, _, endpoint = call.path.strip("/").partition("/")
        if profile not in PROFILES:
            return _json(404, {"error": "not_found"})
        if endpoint == "authorize":
            return self._authorize(profile, call)
        if profile in ROTATING and endpoint in ("token", "user"):
            return self._rotating(profile, endpoint, call)
        if endpoint == "token" and call.method == "POST":
            return self._token(profile, call)
        if endpoint == "refresh" and call.method == "POST":
            return self._refresh(profile, call)
        if endpoint == "user" and call.method == "GET":
            return self._user(profile, call)
        if endpoint == "user/emails" and call.method == "GET" and profile == "githubish":
            return self._emails(call)
        return self._revoke(profile, endpoint, call)

    def _authorize(self, profile: str, call: RecordedCall) -> _Reply:
        redirect_uri = call.query.get("redirect_uri", "")
        if call.query.get("client_id") != self.client_id or not redirect_uri.startswith(
            "http://127.0.0.1:"
        ):
            return _json(400, {"error": "invalid_request"})
        code = self._minted(f"code-{profile}", "code")
        with self._lock:
            self._codes[code] = profile
        back = {"code": code}
        if "state" in call.query:
            back["state"] = call.query["state"]
        if profile == "salesforceish":
            back["realmId"] = REALM_ID
        return _Reply(302, headers={"Location": f"{redirect_uri}?{urlencode(back)}"})

    def _client_ok(self, call: RecordedCall) -> bool:
        form = call.form
        given = call.basic_auth() or (form.get("client_id"), form.get("client_secret"))
        return given == (self.client_id, self.client_secret)

    def _minted(self, prefix: str, kind: str) -> str:
        """A secret this provider hands out: unguessable, and in the session's record, so that
        the scan of every process's output looks for it."""
        value = f"{prefix}-{next(self._serial)}-{secrets.token_urlsafe(12)}"
        outputs.RECORD.add_secret(value, kind)
        return value

    def _issue(self, profile: str) -> str:
        token = self._minted(f"at-{profile}", "access_token")
        with self._lock:
            self._access[token] = profile
        return token

    def _token(self, profile: str, call: RecordedCall) -> _Reply:
        form = call.form
        if not self._client_ok(call):
            return _json(401, {"error": "invalid_client"})
        if form.get("grant_type") == "refresh_token":
            return self._refresh(profile, call)
        with self._lock:
            known = self._codes.pop(form.get("code", ""), None)
        if known != profile:
            return _json(400, {"error": "invalid_grant"})
        access = self._issue(profile)
        if profile == "slackish":
            return _json(
                200,
                {
                    "ok": True,
                    "app_id": "A0001",
                    "access_token": "xoxb-bot-token-not-for-users",
                    "token_type": "bot",
                    "scope": "commands",
                    "team": TEAM,
                    "enterprise": None,
                    "authed_user": {
                        "id": "U042",
                        "scope": "users:read,chat:write",
                        "access_token": access,
                        "token_type": "user",
                        "refresh_token": self._minted("rt-slackish", "refresh_token"),
                        "expires_in": 43200,
                    },
                },
            )
        if profile == "githubish":
            # What GitHub sends when the request does not ask for JSON.
            text = urlencode({"access_token": access, "scope": "read:user", "token_type": "bearer"})
            return _Reply(200, text.encode(), "application/x-www-form-urlencoded; charset=utf-8")
        return _json(
            200,
            {
                "access_token": access,
                "refresh_token": "rt-salesforceish-first",
                "instance_url": INSTANCE_URL,
                "id": "https://login.example.test/id/00D/005",
                "token_type": "Bearer",
                "scope": "api refresh_token",
                "signature": "c2lnbmF0dXJl",
            },
        )

    def _refresh(self, profile: str, call: RecordedCall) -> _Reply:
        """Salesforce-like: a new access token, no new refresh token (it does not rotate)."""
        form = call.form
        if not self._client_ok(call) or form.get("grant_type") != "refresh_token":
            return _json(401, {"error": "invalid_client"})
        if form.get("refresh_token") != f"rt-{profile}-first":
            return _json(400, {"error": "invalid_grant"})
        return _json(
            200,
            {"access_token": self._issue(profile), "token_type": "Bearer", "scope": "api"},
        )

    def _rotating(self, profile: str, endpoint: str, call: RecordedCall) -> _Reply:
        lifetime, grace = ROTATING[profile]
        if endpoint == "user":
            with self._lock:
                grant = self._grant_of_access.get(call.bearer() or "")
                live = grant is not None and call.bearer() in self._access
            if grant is None or not live:
                return _json(401, {"error": "invalid_token"})
            return _json(
                200, {"user_id": f"acct-{grant.number}", "name": f"Account {grant.number}"}
            )
        if not self._client_ok(call):
            return _json(401, {"error": "invalid_client"})
        form = call.form
        with self._lock:
            if form.get("grant_type") == "refresh_token":
                grant = self._grants.get(form.get("refresh_token", ""))
                presented = form.get("refresh_token", "")
                if grant is None or grant.revoked:
                    return _json(400, {"error": "invalid_grant"})
                if presented != grant.live_refresh:
                    rotated_at = grant.rotated[presented]
                    if time.monotonic() - rotated_at >= grace:
                        # Reuse detection: a rotated token came back; end the whole grant.
                        grant.revoked = True
                        for token in grant.access:
                            self._access.pop(token, None)
                        return _json(400, {"error": "invalid_grant"})
                grant.rotated[grant.live_refresh] = time.monotonic()
                self.refreshes[profile] += 1
            elif self._codes.pop(form.get("code", ""), None) == profile:
                grant = _Grant(next(self._serial), profile, "")
            else:
                return _json(400, {"error": "invalid_grant"})
            refresh = self._minted(f"rt-{profile}", "refresh_token")
            access = self._minted(f"at-{profile}", "access_token")
            grant.live_refresh = refresh
            grant.access.add(access)
            self._grants[refresh] = grant
            self._grant_of_access[access] = grant
            self._access[access] = profile
            cut = form.get("grant_type") == "refresh_token" and self._cut > 0
            if cut:
                self._cut -= 1
        answer = {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": "read",
        }
        return _Reply(200, json.dumps(answer).encode(), reset=cut)

    def _user(self, profile: str, call: RecordedCall) -> _Reply:
        token = call.bearer()
        if token is None or not self.is_live(token):
            return _json(401, {"message": "Bad credentials"})
        if profile == "githubish":  # GitHub shows only a public e-mail here, usually none
            return _json(200, {"id": 4242, "login": "octo", "name": None, "email": None})
        return _json(200, {"user_id": "005xx", "email": "sf@example.test", "name": "Sales Force"})

    def _emails(self, call: RecordedCall) -> _Reply:
        token = call.bearer()
        if token is None or not self.is_live(token):
            return _json(401, {"message": "Bad credentials"})
        return _json(
            200,
            [
                {"email": "old@example.test", "primary": False, "verified": True},
                {"email": "o@example.test", "primary": True, "verified": True},
                {"email": "new@example.test", "primary": False, "verified": False},
            ],
        )

    def _revoke(self, profile: str, endpoint: str, call: RecordedCall) -> _Reply:
        revoked: str | None = None
        if profile == "slackish" and endpoint == "auth.revoke" and call.method == "GET":
            revoked = call.bearer()
        elif (
            profile == "githubish"
            and endpoint == f"applications/{self.client_id}/grant"
            and call.method == "DELETE"
            and call.basic_auth() == (self.client_id, self.client_secret)
        ):
            revoked = call.json.get("access_token")
        elif profile == "salesforceish" and endpoint == "revoke" and self._client_ok(call):
            revoked = "*"  # the refresh token ends the whole grant
        with self._lock:
            if revoked == "*":
                gone = [t for t, p in self._access.items() if p == profile]
            else:
                gone = [revoked] if revoked in self._access else []
            for token in gone:
                del self._access[token]
        if not gone:
            return _json(404 if profile == "githubish" else 400, {"ok": False, "error": "nope"})
        if profile == "githubish":
            return _Reply(204)
        return _json(200, {"ok": True, "revoked": True})


def fake_provider_entries(fake: FakeProvider) -> dict[str, dict[str, Any]]:
    """Providers-file entries for the profiles, keyed ``fake-<profile>``."""
    base = fake.url
    rotating = {
        f"fake-{profile}": {
            "display_name": f"Fake {profile}",
            "authorization_url": f"{base}/{profile}/authorize",
            "token_url": f"{base}/{profile}/token",
            "userinfo": {"url": f"{base}/{profile}/user", "id_path": "user_id"},
            "default_scopes": ["read"],
            "token_endpoint_auth_method": "client_secret_post",
            **({"refresh_token_grace_seconds": grace} if grace else {}),
        }
        for profile, (_, grace) in ROTATING.items()
    }
    return {
        **rotating,
        "fake-slackish": {
            "display_name": "Fake Slack",
            "authorization_url": f"{base}/slackish/authorize",
            "token_url": f"{base}/slackish/token",
            "revocation": {
                "method": "GET",
                "url": f"{base}/slackish/auth.revoke",
                "auth": "bearer",
                "token": "access_token",
            },
            "userinfo": {"from_token_response": True, "id_path": "authed_user.id"},
            "default_scopes": ["users:read", "chat:write"],
            "scope_separator": ",",
            "scope_param": "user_scope",
            "pkce": False,
            "token_endpoint_auth_method": "client_secret_post",
            "token_response": {
                "access_token": "authed_user.access_token",
                "refresh_token": "authed_user.refresh_token",
                "expires_in": "authed_user.expires_in",
                "scope": "authed_user.scope",
            },
            "token_metadata": {"team_id": "team.id", "team_name": "team.name"},
        },
        "fake-githubish": {
            "display_name": "Fake GitHub",
            "authorization_url": f"{base}/githubish/authorize",
            "token_url": f"{base}/githubish/token",
            "revocation": {
                "method": "DELETE",
                "url": base + "/githubish/applications/{client_id}/grant",
                "auth": "client_basic",
                "body_format": "json",
                "body": {"access_token": "{access_token}"},
            },
            "userinfo": {
                "url": f"{base}/githubish/user",
                "id_path": "id",
                "email_path": "email",
                "name_path": ["name", "login"],  # GitHub's name is null until the user sets one
                "email_fallback": {"url": f"{base}/githubish/user/emails"},
            },
            "default_scopes": ["read:user"],
            "token_endpoint_auth_method": "client_secret_post",
        },
        "fake-salesforceish": {
            "display_name": "Fake Salesforce",
            "authorization_url": f"{base}/salesforceish/authorize",
            "token_url": f"{base}/salesforceish/token",
            "refresh_url": f"{base}/salesforceish/refresh",
            "revocation": {
                "method": "POST",
                "url": f"{base}/salesforceish/revoke",
                "auth": "none",
                "headers": {"X-Fake-Version": "7"},
                "body_format": "form",
                "body": {
                    "client_id": "{client_id}",
                    "client_secret": "{client_secret}",
                    "token": "{refresh_token}",
                    "realm": "{realmId}",
                },
                "token": "refresh_token",
            },
            "userinfo": {"url": f"{base}/salesforceish/user", "id_path": "user_id"},
            "default_scopes": ["api", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_basic",
            "default_expires_in": 3600,
            "token_metadata": {"instance_url": "instance_url", "identity_url": "id"},
            "callback_metadata": ["realmId"],
        },
    }
