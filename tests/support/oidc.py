"""Drive a real, certified OpenID provider (panva's oidc-provider) from tests.

Tests talk to a genuine OP rather than a mock so that PKCE, RFC 9207 ``iss``,
refresh-token rotation with reuse detection and revocation behave exactly as a
standards-following provider does. The provider runs as a separate Node.js
process (``oidc_provider/server.mjs``) on a free loopback port.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import signal
import socket
import subprocess
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urljoin, urlsplit

import httpx

from tests.support import outputs, web

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
# Node 22 when installed, else the one on PATH without the provider's version warning.
NODE = Path(__file__).resolve().parents[2] / "scripts" / "node"
START_TIMEOUT_S = 15.0
STOP_GRACE_S = 5.0


def ensure_node_modules() -> None:
    """Install the pinned oidc-provider from package-lock.json when it is missing or stale.

    An fcntl lock serialises pytest-xdist workers so only one runs ``npm ci``.
    """
    if _installed_matches_pin():
        return
    with open(PROVIDER_DIR / ".npm-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _installed_matches_pin():  # another worker finished while we waited
                return
            proc = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"],
                cwd=PROVIDER_DIR,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"npm ci failed in {PROVIDER_DIR}:\n{proc.stderr}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _installed_matches_pin() -> bool:
    """True if node_modules holds exactly the oidc-provider version package.json pins."""
    installed = PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json"
    if not installed.exists():
        return False
    pinned = json.loads((PROVIDER_DIR / "package.json").read_text())["dependencies"]
    return bool(json.loads(installed.read_text())["version"] == pinned["oidc-provider"])


def free_port() -> int:
    """Return a loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return (parts.scheme, parts.hostname or "", parts.port)


class OidcProvider:
    """A running oidc-provider process; stop it with ``stop()`` or a ``with`` block."""

    def __init__(
        self,
        process: subprocess.Popen[str],
        issuer: str,
        port: int,
        metadata: dict[str, Any],
        refresh_log: Path,
    ) -> None:
        self._process = process
        self._refresh_log = refresh_log
        self._issuer = issuer
        self._port = port
        self._metadata = metadata
        self._stderr_lines: list[str] = []
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()

    @classmethod
    def start(
        cls,
        clients: list[dict[str, Any]],
        *,
        port: int | None = None,
        access_token_ttl: int = 3600,
        features: dict[str, bool] | None = None,
        auto_login: str | None = None,
        workdir: Path,
        refresh_token_ttl: int | None = None,
        extra_scopes: list[str] | None = None,
    ) -> OidcProvider:
        """Start the provider and return once discovery answers.

        ``clients`` are oidc-provider client metadata (``client_id``, ``client_secret``,
        ``redirect_uris``, ``grant_types`` default to authorization_code + refresh_token,
        ``token_endpoint_auth_method``...). ``features`` keys: ``par``, ``device_flow``,
        ``require_par``, ``client_credentials`` (machine clients registered with
        ``grant_types: ["client_credentials"]``), ``registration`` (RFC 7591 dynamic client
        registration, open to anyone), ``resource_indicators`` (RFC 8707: a token asked for a
        ``resource`` is a JWT with that audience and the scope ``mcp:tools``),
        ``public_clients_only`` (every endpoint takes `token_endpoint_auth_method: none` alone,
        so registered clients are public). ``extra_scopes``: scopes it grants besides
        ``openid email profile offline_access``. With ``auto_login`` every interaction is completed by redirects
        as that account, granting all requested scopes.
        """
        ensure_node_modules()
        attempts = 1 if port is not None else 3  # a picked free port can be stolen; retry
        for attempt in range(attempts):
            chosen = port if port is not None else free_port()
            try:
                return cls._start_once(
                    clients,
                    chosen,
                    access_token_ttl,
                    refresh_token_ttl,
                    features or {},
                    auto_login,
                    workdir,
                    extra_scopes or [],
                )
            except _AddressInUse:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(
        cls,
        clients: list[dict[str, Any]],
        port: int,
        access_token_ttl: int,
        refresh_token_ttl: int | None,
        features: dict[str, bool],
        auto_login: str | None,
        workdir: Path,
        extra_scopes: list[str],
    ) -> OidcProvider:
        issuer = f"http://127.0.0.1:{port}"
        config: dict[str, Any] = {
            "port": port,
            "issuer": issuer,
            "clients": clients,
            "access_token_ttl": access_token_ttl,
            "features": features,
            "auto_login": auto_login,
            "extra_scopes": extra_scopes,
            "exit_on_stdin_eof": True,  # the provider dies with the test process
        }
        if refresh_token_ttl is not None:
            config["refresh_token_ttl"] = refresh_token_ttl
        workdir.mkdir(parents=True, exist_ok=True)
        # What it issues, for the session's scan of every output (tests/support/outputs.py).
        config["issued_file"] = str(workdir / f"oidc-issued-{port}.jsonl")
        outputs.RECORD.issued_file(Path(config["issued_file"]))
        config["refresh_log_file"] = str(workdir / f"oidc-refreshes-{port}.jsonl")
        for client in clients:
            outputs.RECORD.add_secret(client.get("client_secret"), "client_secret")
        config_path = workdir / f"oidc-provider-{port}.json"
        config_path.write_text(json.dumps(config))
        process = subprocess.Popen(
            [str(NODE), str(PROVIDER_DIR / "server.mjs"), str(config_path)],
            cwd=PROVIDER_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            cls._wait_ready(process, issuer)
            metadata = cls._wait_discovery(process, issuer)
        except BaseException:
            _terminate(process)
            raise
        return cls(process, issuer, port, metadata, Path(config["refresh_log_file"]))

    @staticmethod
    def _wait_ready(process: subprocess.Popen[str], issuer: str) -> None:
        """Read stdout lines until READY, bounded by START_TIMEOUT_S."""
        stdout = process.stdout
        assert stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        line = result[0].strip() if result else ""
        if line == f"READY {issuer}":
            return
        _terminate(process)
        stderr = process.stderr.read() if process.stderr else ""
        if "EADDRINUSE" in stderr:
            raise _AddressInUse(stderr)
        raise RuntimeError(
            f"oidc-provider did not become ready "
            f"(exit={process.returncode}, stdout={line!r}):\n{stderr}"
        )

    @staticmethod
    def _wait_discovery(process: subprocess.Popen[str], issuer: str) -> dict[str, Any]:
        deadline = time.monotonic() + START_TIMEOUT_S
        url = f"{issuer}/.well-known/openid-configuration"
        last_error = ""
        while time.monotonic() < deadline and process.poll() is None:
            try:
                response = web.get(url, timeout=2.0)
                if response.status_code == 200:
                    metadata: dict[str, Any] = response.json()
                    return metadata
                last_error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last_error = repr(exc)
            time.sleep(0.05)
        _terminate(process)
        stderr = process.stderr.read() if process.stderr else ""
        raise RuntimeError(
            f"oidc-provider discovery at {url} never answered ({last_error}, "
            f"exit={process.returncode}):\n{stderr}"
        )

    def _drain_stderr(self) -> None:
        """Keep reading stderr so the child never blocks on a full pipe."""
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self._stderr_lines.append(line)

    @property
    def issuer(self) -> str:
        return self._issuer

    @property
    def port(self) -> int:
        return self._port

    @property
    def discovery_url(self) -> str:
        return f"{self._issuer}/.well-known/openid-configuration"

    @property
    def metadata(self) -> dict[str, Any]:
        """The discovery document as fetched at start-up."""
        return self._metadata

    def registrations(self) -> list[dict[str, Any]]:
        """The clients registered dynamically (RFC 7591; ``features={"registration": True}``),
        oldest first: ``client_id`` and ``redirect_uris``."""
        response = web.get(f"{self._issuer}/test/registrations", timeout=5.0)
        response.raise_for_status()
        return list(response.json())

    def grants_issued(self) -> dict[str, int]:
        """How many token requests the provider answered with a token, per ``grant_type``."""
        response = web.get(f"{self._issuer}/test/grants", timeout=5.0)
        response.raise_for_status()
        return {str(name): int(count) for name, count in response.json().items()}

    @property
    def stderr(self) -> str:
        """What the provider logged so far (error codes only, never tokens)."""
        return "".join(self._stderr_lines)

    def refresh_grants(self) -> list[dict[str, Any]]:
        """Every refresh_token grant the provider answered so far, oldest first:
        ``presented_sha256`` (of the refresh token sent), ``status`` and ``error``."""
        if not self._refresh_log.exists():
            return []
        lines = self._refresh_log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE_S; idempotent."""
        _terminate(self._process)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _AddressInUse(RuntimeError):
    pass


def _terminate(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdin is not None and not process.stdin.closed:
        with contextlib.suppress(OSError):
            process.stdin.close()


class _PageParser(HTMLParser):
    """Collects <title>, <h1>, the first <form> and the Cancel link of a dev-interaction page."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.heading = ""
        self.form_action: str | None = None
        self.inputs: dict[str, str] = {}
        self.abort_href: str | None = None
        self._in: str | None = None
        self._forms_seen = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag in ("title", "h1"):
            self._in = tag
        elif tag == "form":
            self._forms_seen += 1
            if self._forms_seen == 1:
                self.form_action = attr.get("action")
        elif tag == "input" and self._forms_seen == 1 and "name" in attr:
            self.inputs[attr["name"]] = attr.get("value", "")
        elif tag == "a" and attr.get("href", "").endswith("/abort"):
            self.abort_href = attr["href"]

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title += data.strip()
        elif self._in == "h1":
            self.heading += data.strip()


def login_and_consent(authorization_url: str, *, login: str = "alice", deny: bool = False) -> str:
    """Act as the user's browser at the provider and return where it sends the user back.

    Follows redirects that stay on the provider's origin, submits the dev-interaction
    login form (any password) and the consent form, or with ``deny=True`` presses
    Cancel (the provider then answers ``error=access_denied``). The first redirect that
    leaves the provider's origin (the client's ``redirect_uri`` with ``code``/``state``/
    ``iss`` or ``error``) is returned without being requested.
    """
    provider_origin = _origin(authorization_url)
    with web.client(follow_redirects=False, timeout=10.0) as browser:
        response = browser.get(authorization_url)
        for _ in range(20):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if _origin(location) != provider_origin:
                    return location
                response = browser.get(location)
                continue
            if response.status_code != 200:
                raise RuntimeError(
                    f"unexpected HTTP {response.status_code} at {response.url} "
                    f"(title {_page_title(response)!r})"
                )
            response = _submit_interaction(browser, response, login=login, deny=deny)
        raise RuntimeError(f"too many steps at the provider; last URL {response.url}")


def _submit_interaction(
    browser: httpx.Client, page: httpx.Response, *, login: str, deny: bool
) -> httpx.Response:
    parser = _PageParser()
    parser.feed(page.text)
    prompt = parser.inputs.get("prompt")
    if parser.form_action is None or prompt not in ("login", "consent"):
        raise RuntimeError(
            f"expected a dev-interaction login or consent form at {page.url}, "
            f"got page titled {parser.title!r} / {parser.heading!r}"
        )
    if deny:
        if parser.abort_href is None:
            raise RuntimeError(
                f"no Cancel link on {prompt} page at {page.url} ({parser.heading!r})"
            )
        return browser.get(urljoin(str(page.url), parser.abort_href))
    fields = dict(parser.inputs)
    if prompt == "login":
        fields.update(login=login, password="any-password")
    return browser.post(urljoin(str(page.url), parser.form_action), data=fields)


def _page_title(response: httpx.Response) -> str:
    if "html" not in response.headers.get("content-type", ""):
        return ""
    parser = _PageParser()
    parser.feed(response.text)
    return f"{parser.title} / {parser.heading}"


def approve_device(
    verification_uri: str,
    *,
    user_code: str | None = None,
    login: str = "alice",
    deny: bool = False,
) -> str:
    """Act as the user on a second device (RFC 8628 §3.3) and return the final page's title.

    Opens ``verification_uri`` (or the ``_complete`` one, which carries the code), enters
    ``user_code`` in the provider's form when it asks, confirms the code — or with
    ``deny=True`` presses Abort there (the device code then answers ``access_denied``) — and
    goes through the same login and consent forms as ``login_and_consent``.
    """
    with web.client(follow_redirects=False, timeout=10.0) as browser:
        response = browser.get(verification_uri)
        for _ in range(20):
            if response.is_redirect:
                response = browser.get(urljoin(str(response.url), response.headers["location"]))
                continue
            if response.status_code != 200:
                raise RuntimeError(
                    f"unexpected HTTP {response.status_code} at {response.url} "
                    f"(title {_page_title(response)!r})"
                )
            parser = _PageParser()
            parser.feed(response.text)
            if parser.form_action is None:  # "Sign-in Success", or an error page
                return f"{parser.title} / {parser.heading}"
            if "prompt" in parser.inputs:
                response = _submit_interaction(browser, response, login=login, deny=False)
                continue
            if "xsrf" not in parser.inputs:
                raise RuntimeError(f"unexpected form at {response.url}: {parser.title!r}")
            fields = dict(parser.inputs)
            if not fields.get("user_code"):
                if user_code is None:
                    raise RuntimeError("the provider asks for the user code; pass user_code=")
                fields["user_code"] = user_code
            aborting = deny and "confirm" in fields
            if aborting:
                del fields["confirm"]
                fields["abort"] = "yes"
            response = browser.post(urljoin(str(response.url), parser.form_action), data=fields)
            if aborting:
                return _page_title(response)
        raise RuntimeError(f"too many steps at the provider; last URL {response.url}")


def token_request(
    provider: OidcProvider, client_id: str, client_secret: str, data: dict[str, str]
) -> httpx.Response:
    """POST straight to the provider's token endpoint (client_secret_basic).

    Lets tests check at the source whether a refresh token still works or was revoked.
    """
    # RFC 6749 section 2.3.1: id and secret are form-urlencoded before Basic encoding.
    auth = (quote(client_id, safe=""), quote(client_secret, safe=""))
    return web.post(provider.metadata["token_endpoint"], data=data, auth=auth, timeout=10.0)


__all__ = [
    "PROVIDER_DIR",
    "OidcProvider",
    "approve_device",
    "ensure_node_modules",
    "free_port",
    "login_and_consent",
    "token_request",
]
