"""The schema of one catalog entry (SPEC §6). Unknown fields are errors, so typos cannot hide."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Names are identifiers; camelCase is allowed for provider values such as QuickBooks' realmId.
TEMPLATE_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Variables the service itself fills in (never from user input).
BUILTIN_VARIABLES = frozenset({"client_id", "access_token", "refresh_token", "token"})
# Only a provider's own revocation call may carry the client secret (Todoist, Webflow, Stripe
# want it as a parameter); it is never filled into any other URL or header.
REVOCATION_VARIABLES = BUILTIN_VARIABLES | {"client_secret"}
# Words that mark a value as a credential: never kept as provider metadata.
SECRET_WORDS = ("token", "secret", "code", "password")
PROVIDER_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# The authority of a URL template: where a variable there chooses whom the service talks to.
_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")
# ``{name}.fixed.domain``: a variable that is only the first label under a fixed domain.
_LABEL_UNDER_DOMAIN = r"^\{%s\}(\.[A-Za-z0-9-]+){2,}(:[0-9]+)?$"


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ``{name}`` as a whole origin at the start of ``api_base_url`` (Salesforce's ``{instance_url}``).
LEADING_ORIGIN = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}(?=/|$)")


def check_provider_url(value: str) -> str:
    """Production URLs must be https; plain http is allowed on loopback only (local servers)."""
    # Template variables stand in for host labels; validate the URL's shape with a placeholder.
    probe = TEMPLATE_VARIABLE.sub("x", value)
    parts = urlsplit(probe)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return value
    raise ValueError(f"must be an https URL (http only on loopback), got {value!r}")


ProviderURL = Annotated[str, Field(min_length=8, max_length=2000)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntegrationParam(StrictModel):
    """A value the user supplies for one connection (e.g. a Zendesk subdomain)."""

    pattern: str = Field(description="A regular expression the whole value must match.")
    description: str | None = None
    example: str | None = None
    required: bool = True
    default: str | None = Field(
        default=None,
        description="Used when the caller gives no value (Microsoft's tenant: `common`); "
        "it must match the pattern like any other value.",
    )
    set_by: Literal["admin", "member"] | None = Field(
        default=None,
        description="Who chooses the value. `admin`: an owner or admin, on the organization's "
        "OAuth app (`PUT /apps/{app_key}`), or the operator (this file's `default`); a member's "
        "`POST /authorize` may not pass it. `member`: each connection's caller. Unset: `admin` "
        "for a parameter used in the host of a URL (it chooses where the client secret goes), "
        "`member` otherwise. A host parameter may be `member` only as the first label under "
        "a fixed domain (`https://{shop}.myshopify.com`).",
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _default_matches(self) -> IntegrationParam:
        if self.default is not None and not re.fullmatch(self.pattern, self.default):
            raise ValueError(f"default {self.default!r} does not match the pattern")
        return self


# Values an identity call's body may carry besides the token: the app's own credentials, for
# providers whose identity call is an introspection that authenticates the client in its body
# (HubSpot's /oauth/v3/token/introspect). Never in its URL or headers, where logs keep them.
IDENTITY_BODY_VARIABLES = frozenset({"access_token", "client_id", "client_secret"})


class EmailFallback(StrictModel):
    """A second identity call for the account's e-mail when the first answer has none.

    GitHub's ``/user`` shows only a public e-mail (often null); ``/user/emails`` lists every
    address with ``primary`` and ``verified`` flags. The address taken is the first item whose
    ``require`` fields are all true. The call is made with the token like the identity call; if
    it fails or finds nothing, the connection is made without an e-mail (never refused).
    """

    url: ProviderURL
    headers: dict[str, str] = {}
    list_path: str | None = Field(
        default=None, description="Where the list sits in the answer; unset: the answer is it."
    )
    email_field: str = "email"
    require: list[str] = ["primary", "verified"]

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_provider_url(value)


class IdentityMapping(StrictModel):
    """Where the account's id, email and name sit in the provider's identity answer.

    Paths are dotted (``data.user.id``; list items by index, ``emails.0.value``); a list of
    paths is tried in order (Microsoft Graph's ``mail`` is null for some accounts, so
    ``userPrincipalName`` follows it). With no ``url`` the discovered OpenID
    ``userinfo_endpoint`` is used. A header value may carry ``{access_token}`` for providers
    that take the token in their own header (Shopify's ``X-Shopify-Access-Token``); the bearer
    header is then not sent. Top-level string values of ``body`` may use ``{access_token}``,
    ``{client_id}`` and ``{client_secret}`` (an introspection call: HubSpot); a body that
    carries the token sends no bearer header either.
    """

    url: ProviderURL | None = None
    method: Literal["GET", "POST"] = "GET"
    headers: dict[str, str] = {}
    body: dict[str, Any] | None = None
    body_format: Literal["json", "form"] = "json"
    id_path: str = "sub"
    email_path: str | list[str] | None = "email"
    name_path: str | list[str] | None = "name"
    # Fallback: read identity from the token answer itself (Slack puts the user id there).
    from_token_response: bool = False
    email_fallback: EmailFallback | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_provider_url(value)

    @model_validator(mode="after")
    def _credentials_in_body_only(self) -> IdentityMapping:
        for name, value in self.headers.items():
            if "{client_secret}" in value:
                raise ValueError(f"headers.{name}: the client secret may go in the body only")
        if self.body_format == "form" and any(
            not isinstance(value, str) for value in (self.body or {}).values()
        ):
            raise ValueError("a form body takes string values only")
        if self.uses_client_credentials and (self.url is None or self.method != "POST"):
            raise ValueError(
                "a body with {client_id} or {client_secret} needs method POST and a url written "
                "in the entry (never a discovered one)"
            )
        return self

    @property
    def uses_client_credentials(self) -> bool:
        values = [v for v in (self.body or {}).values() if isinstance(v, str)]
        return any("{client_id}" in v or "{client_secret}" in v for v in values)

    @property
    def body_carries_token(self) -> bool:
        return any(isinstance(v, str) and "{access_token}" in v for v in (self.body or {}).values())


class TokenResponsePaths(StrictModel):
    """Where the tokens sit in a token answer that nests them (Slack's ``authed_user``)."""

    access_token: str = "access_token"
    refresh_token: str = "refresh_token"
    expires_in: str = "expires_in"
    scope: str = "scope"
    token_type: str = "token_type"


class RevocationCall(StrictModel):
    """A provider's own revocation call, for providers without RFC 7009.

    ``url`` and the values of ``headers``, ``query`` and ``body`` may use ``{client_id}``,
    ``{client_secret}``, ``{access_token}``, ``{refresh_token}``, ``{token}`` and any name the
    entry keeps as provider metadata (Stripe's ``{stripe_user_id}``). ``auth`` says how the
    call authenticates: HTTP Basic with the client credentials, the token as bearer, or nothing
    beyond what the parameters carry.
    """

    method: Literal["POST", "DELETE", "GET"] = "POST"
    url: ProviderURL
    auth: Literal["client_basic", "bearer", "none"] = "bearer"
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    body_format: Literal["json", "form"] = "json"
    body: dict[str, str] = {}
    token: Literal["access_token", "refresh_token"] = "access_token"

    def templated_strings(self) -> list[tuple[str, str]]:
        found = [("revocation.url", self.url)]
        for part in ("headers", "query", "body"):
            found.extend((f"revocation.{part}.{k}", v) for k, v in getattr(self, part).items())
        return found

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_provider_url(value)


class TestRequest(StrictModel):
    """A read-only call that proves a token works (``POST /{id}/test``)."""

    method: Literal["GET", "POST"] = "GET"
    url: ProviderURL
    headers: dict[str, str] = {}
    body: dict[str, Any] | None = None
    action: str = "read_profile"
    expect_status: list[int] = [200]

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_provider_url(value)


# How a connection is made (SPEC §10): the authorization code, or credentials the user gives.
AuthMode = Literal["oauth2", "api_key", "basic", "oauth2_client_credentials", "jwt_bearer"]
# Modes whose connections hold the user's own credentials fields (no authorization code) ...
CREDENTIALS_MODES = frozenset({"api_key", "basic", "oauth2_client_credentials", "jwt_bearer"})
# ... and, among them, those that mint access tokens with them at the entry's ``token_url``.
MINTING_MODES = frozenset({"oauth2_client_credentials", "jwt_bearer"})
CREDENTIAL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class CredentialField(StrictModel):
    """One value a user gives to connect an ``api_key``/``basic``/minting entry."""

    name: str = Field(description="Lower-case identifier; `{name}` in `api_auth` and calls.")
    label: str = Field(min_length=1, max_length=100)
    secret: bool = Field(
        default=True, description="Sealed, masked on the connect page, never shown again."
    )
    pattern: str | None = Field(
        default=None, description="A regular expression the whole value must match."
    )
    help_url: ProviderURL | None = Field(
        default=None, description="Where the user finds or makes this value."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not CREDENTIAL_NAME.match(value) or value in BUILTIN_VARIABLES:
            raise ValueError("must be a lower-case identifier that is not a service value")
        return value

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from exc
        return value


class BasicCredentials(StrictModel):
    """HTTP Basic built from credentials fields (``{email}`` / ``{api_token}``)."""

    username: str
    password: str = ""


class ApiAuth(StrictModel):
    """How a connection's credentials go on a call to the provider's API (proxy, checks).

    Values are templates over ``{access_token}`` and the entry's credentials fields. With no
    ``api_auth`` an entry sends ``Authorization: Bearer {access_token}``.
    """

    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    basic: BasicCredentials | None = None

    def templates(self) -> list[tuple[str, str]]:
        found = [(f"api_auth.headers.{k}", v) for k, v in self.headers.items()]
        found.extend((f"api_auth.query.{k}", v) for k, v in self.query.items())
        if self.basic is not None:
            found.append(("api_auth.basic.username", self.basic.username))
            found.append(("api_auth.basic.password", self.basic.password))
        return found

    @model_validator(mode="after")
    def _something(self) -> ApiAuth:
        if not (self.headers or self.query or self.basic):
            raise ValueError("declare headers, query or basic")
        return self


class McpServer(StrictModel):
    """The provider's own remote MCP server (Streamable HTTP), reached with the connection's
    token (SPEC §11). The URL is the operator's, fixed: no template variables."""

    url: ProviderURL

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if TEMPLATE_VARIABLE.search(value) or "{" in value:
            raise ValueError("an MCP server URL takes no template variables")
        return check_provider_url(value)


# Claims the service sets on every assertion itself.
_SERVICE_CLAIMS = frozenset({"iat", "exp", "nbf", "jti"})


class JwtAssertion(StrictModel):
    """The RFC 7523 assertion a ``jwt_bearer`` entry signs with the user's private key.

    Google service accounts are the model: ``claims: {iss: "{client_email}"}``, ``aud`` left to
    its default (the token URL), ``scope_claim: true``. The service sets ``iat``, ``exp`` and
    ``jti``; ``aud`` defaults to the entry's ``token_url``.
    """

    private_key: str = Field(
        default="private_key",
        description="The credentials field that holds the PEM private key (a secret field).",
    )
    algorithm: Literal[
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"
    ] = "RS256"
    key_id: str | None = Field(
        default=None, description="The JWT header's `kid`, a template (`{private_key_id}`)."
    )
    claims: dict[str, str] = Field(
        default={},
        description="Claims as templates over credentials fields (`iss`, `sub`, `aud`, …).",
    )
    scope_claim: bool = Field(
        default=False,
        description="Send the entry's default scopes as the JWT's `scope` claim (Google) rather "
        "than as the token request's `scope` parameter (RFC 7523).",
    )
    lifetime_seconds: int = Field(default=3600, ge=60, le=3600)

    def templates(self) -> list[tuple[str, str]]:
        found = [(f"mint.assertion.claims.{k}", v) for k, v in self.claims.items()]
        if self.key_id is not None:
            found.append(("mint.assertion.key_id", self.key_id))
        return found

    @field_validator("claims")
    @classmethod
    def _claims(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(set(value) & _SERVICE_CLAIMS)
        if reserved:
            raise ValueError(f"the service sets {', '.join(reserved)} itself")
        return value


class Minting(StrictModel):
    """How an ``oauth2_client_credentials`` or ``jwt_bearer`` entry gets an access token at its
    ``token_url`` with a connection's credentials (SPEC §10). Values are templates over the
    entry's credentials fields; scopes are the entry's ``default_scopes``.

    ``oauth2_client_credentials``: ``client_id`` and ``client_secret``, sent as the entry's
    ``token_endpoint_auth_method`` says. ``jwt_bearer``: ``assertion``.
    """

    client_id: str | None = Field(default=None, description="e.g. `{app_id}`")
    client_secret: str | None = Field(default=None, description="e.g. `{app_secret}`")
    assertion: JwtAssertion | None = None

    def templates(self) -> list[tuple[str, str]]:
        found = [
            (f"mint.{name}", value)
            for name in ("client_id", "client_secret")
            if (value := getattr(self, name)) is not None
        ]
        if self.assertion is not None:
            found.extend(self.assertion.templates())
        return found


URL_FIELDS = (
    "authorization_url",
    "token_url",
    "refresh_url",
    "revocation_url",
    "discovery_url",
    "device_authorization_url",
    "par_url",
    "api_base_url",
)


class ProviderEntry(StrictModel):
    key: str
    display_name: str = Field(min_length=1, max_length=100)
    description: str | None = None
    category: str = "other"
    icon_url: str | None = None
    docs_url: str | None = None
    auth_mode: AuthMode = "oauth2"
    release_channel: Literal["stable", "beta"] = "stable"

    discovery_url: ProviderURL | None = None
    issuer: str | None = None
    authorization_url: ProviderURL | None = None
    token_url: ProviderURL | None = None
    # Where refresh_token grants go when not to token_url (Figma's /v1/oauth/refresh).
    refresh_url: ProviderURL | None = None
    revocation_url: ProviderURL | None = None
    # How the RFC 7009 call authenticates when not like the token endpoint: Calendly wants the
    # client credentials in the body, Todoist HTTP Basic. Unset: token_endpoint_auth_method.
    revocation_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] | None = (
        None
    )
    revocation: RevocationCall | None = None
    device_authorization_url: ProviderURL | None = None
    par_url: ProviderURL | None = None
    userinfo: IdentityMapping | None = None

    default_scopes: list[str] = []
    scope_separator: str = " "
    # The authorization parameter the scopes go in: Slack takes user-token scopes as
    # `user_scope` (its `scope` is for bot scopes).
    scope_param: str = Field(default="scope", pattern=r"^[a-z][a-z0-9_]*$")
    pkce: bool = True
    # `none`: a public client (PKCE and the client id alone, RFC 9700 §2.1.1).
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] = (
        "client_secret_basic"
    )
    authorization_params: dict[str, str] = {}
    token_params: dict[str, str] = {}
    token_response: TokenResponsePaths | None = None
    # Non-secret values to keep with the connection, shown as `provider_metadata` so callers
    # can build API URLs: name -> dotted path in the token answer (Salesforce `instance_url`,
    # Slack `team.id`) ...
    token_metadata: dict[str, str] = {}
    # ... and names of query parameters of the provider's redirect back (QuickBooks `realmId`).
    callback_metadata: list[str] = []
    default_expires_in: int | None = Field(default=None, gt=0)
    refresh_margin: int = Field(default=300, ge=0, le=86400)
    # How long the provider still accepts a refresh token it has just rotated (Okta, Auth0 and
    # Ory Hydra can be set to): a refresh whose answer was lost is retried with it meanwhile.
    refresh_token_grace_seconds: int = Field(default=0, ge=0, le=86400)
    supports_refresh: bool = True
    integration_params: dict[str, IntegrationParam] = {}
    test_request: TestRequest | None = None
    api_base_url: ProviderURL | None = Field(
        default=None,
        description="Where the proxy sends a connection's API calls (SPEC §9). May use "
        "integration params and provider metadata named in `metadata_patterns`, and may start "
        "with a metadata value that is a whole origin (`{instance_url}/services/data`).",
    )
    # Patterns the provider metadata values used in ``api_base_url`` must match, checked on
    # every use: such a value comes from the token answer or through the browser at the callback.
    metadata_patterns: dict[str, str] = Field(
        default={},
        description="Provider metadata name -> a regular expression its whole value must "
        "match before `api_base_url` uses it (e.g. `instance_url: "
        "'^https://[a-z0-9-]+\\.my\\.salesforce\\.com$'`).",
    )
    api_auth: ApiAuth | None = None
    credentials: list[CredentialField] = []
    mint: Minting | None = Field(
        default=None,
        description="oauth2_client_credentials and jwt_bearer: how an access token is minted.",
    )
    # Some providers drop `state` on the way back; the flow is then tied to the
    # browser by a per-flow cookie instead.
    returns_state: bool = True
    # The provider's remote MCP server, when it runs one (GET /{id}/tools, the MCP gateway).
    mcp: McpServer | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not PROVIDER_KEY.match(value):
            raise ValueError("must be lower-case letters, digits, '-' or '_' (max 63)")
        return value

    @field_validator(*URL_FIELDS)
    @classmethod
    def _https(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.field_name == "api_base_url":
            # A metadata origin stands for a whole https origin; its pattern is checked below.
            check_provider_url(LEADING_ORIGIN.sub("https://x.x", value))
            return value
        return check_provider_url(value)

    @field_validator("metadata_patterns")
    @classmethod
    def _metadata_patterns(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{name}: pattern does not compile: {exc}") from exc
            if not (pattern.startswith("^") and pattern.endswith("$")):
                raise ValueError(f"{name}: the pattern must be anchored (^…$)")
        return value

    @field_validator("token_metadata")
    @classmethod
    def _metadata_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not TEMPLATE_VARIABLE.fullmatch(f"{{{name}}}"):
                raise ValueError(f"name {name!r} must be letters, digits or '_'")
            if any(word in path.lower() for word in SECRET_WORDS):
                raise ValueError(f"{name}: {path!r} looks like a credential, which is never kept")
        return value

    @field_validator("callback_metadata")
    @classmethod
    def _callback_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", name):
                raise ValueError(f"{name!r} is not a query parameter name")
            if name in {"code", "state", "error", "error_description", "iss"} or any(
                word in name.lower() for word in SECRET_WORDS
            ):
                raise ValueError(f"{name!r} is an OAuth parameter or a credential, never kept")
        return value

    @property
    def host_params(self) -> frozenset[str]:
        """Integration params used in the host (authority) of a URL the service calls."""
        found: set[str] = set()
        for _, text in self._templated_strings():
            match = _AUTHORITY.match(text)
            if match:
                found.update(TEMPLATE_VARIABLE.findall(match.group(1)))
        if self.revocation is not None and (match := _AUTHORITY.match(self.revocation.url)):
            found.update(TEMPLATE_VARIABLE.findall(match.group(1)))
        return frozenset(found) & frozenset(self.integration_params)

    @property
    def admin_params(self) -> frozenset[str]:
        """The integration params only an owner, admin or the operator may set."""
        hosts = self.host_params
        return frozenset(
            name
            for name, spec in self.integration_params.items()
            if spec.set_by == "admin" or (spec.set_by is None and name in hosts)
        )

    @property
    def metadata_names(self) -> frozenset[str]:
        return frozenset(self.token_metadata) | frozenset(self.callback_metadata)

    @property
    def credential_names(self) -> frozenset[str]:
        return frozenset(field.name for field in self.credentials)

    @model_validator(mode="after")
    def _credentials(self) -> ProviderEntry:
        names = [field.name for field in self.credentials]
        if len(set(names)) != len(names):
            raise ValueError("credentials: each field name once")
        if self.auth_mode == "oauth2":
            if self.credentials:
                raise ValueError("credentials are for api_key, basic and minting modes only")
        elif not self.credentials:
            raise ValueError(f"auth_mode {self.auth_mode} needs its credentials fields")
        if self.auth_mode in ("api_key", "basic") and (
            self.api_auth is None or self.test_request is None
        ):
            raise ValueError(
                f"auth_mode {self.auth_mode} needs api_auth (how the credentials are sent) and "
                "test_request (the call that proves them)"
            )
        allowed = self.credential_names | {"access_token"}
        for name, text in self.api_auth.templates() if self.api_auth else []:
            for variable in TEMPLATE_VARIABLE.findall(text):
                if variable not in allowed:
                    raise ValueError(
                        f"{name} uses {{{variable}}}, which is neither access_token nor a "
                        "credentials field"
                    )
        return self

    @model_validator(mode="after")
    def _public_client(self) -> ProviderEntry:
        if self.token_endpoint_auth_method == "none" and not self.pkce:
            raise ValueError(
                "token_endpoint_auth_method none (a public client) needs pkce: true; without a "
                "secret, PKCE is what protects the authorization code"
            )
        return self

    @model_validator(mode="after")
    def _revocation_auth(self) -> ProviderEntry:
        if self.revocation_auth_method is not None and self.revocation is not None:
            raise ValueError(
                "revocation_auth_method is for RFC 7009 revocation (revocation_url); a provider's "
                "own call says how it authenticates in revocation.auth"
            )
        return self

    @model_validator(mode="after")
    def _complete(self) -> ProviderEntry:
        if self.auth_mode in MINTING_MODES and self.token_url is None:
            raise ValueError(f"auth_mode {self.auth_mode} needs token_url")
        self._check_mint()
        if self.discovery_url is None and self.auth_mode == "oauth2":
            missing = [
                name for name in ("authorization_url", "token_url") if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"{', '.join(missing)} required unless discovery_url is given")
            if self.userinfo is None or (
                self.userinfo.url is None and not self.userinfo.from_token_response
            ):
                raise ValueError(
                    "userinfo (the identity call, with id_path/email_path/name_path) is required "
                    "unless discovery_url is given"
                )
        declared = set(self.integration_params)
        self._check_api_base_url(declared)
        for name, text in self._templated_strings():
            for variable in TEMPLATE_VARIABLE.findall(text):
                if name == "api_base_url" and variable in self.metadata_patterns:
                    continue  # (_check_api_base_url)
                if variable not in declared and variable not in BUILTIN_VARIABLES:
                    raise ValueError(
                        f"{name} uses {{{variable}}} but integration_params declares no "
                        "pattern for it"
                    )
                spec = self.integration_params.get(variable)
                if spec is not None and not spec.required and spec.default is None:
                    raise ValueError(
                        f"{name} uses {{{variable}}}, so integration_params.{variable} must be "
                        "required or have a default"
                    )
        for name in self.host_params:
            if self.integration_params[name].set_by == "member" and not self._label_only(name):
                raise ValueError(
                    f"integration_params.{name} chooses a URL's host, so only an admin may set "
                    "it (set_by: member is allowed only for {name}.fixed.domain hosts)"
                )
        allowed = declared | REVOCATION_VARIABLES | self.metadata_names
        for name, text in self.revocation.templated_strings() if self.revocation else []:
            for variable in TEMPLATE_VARIABLE.findall(text):
                if variable not in allowed:
                    raise ValueError(
                        f"{name} uses {{{variable}}}, which is neither a service value, an "
                        "integration_param nor a kept metadata name"
                    )
        return self

    def _check_mint(self) -> None:
        mint = self.mint
        if self.auth_mode not in MINTING_MODES:
            if mint is not None:
                raise ValueError("mint is for oauth2_client_credentials and jwt_bearer only")
            return
        if mint is None:
            raise ValueError(f"auth_mode {self.auth_mode} needs mint (how a token is minted)")
        if self.auth_mode == "oauth2_client_credentials" and (
            mint.client_id is None or mint.client_secret is None or mint.assertion is not None
        ):
            raise ValueError(
                "auth_mode oauth2_client_credentials needs mint.client_id and "
                "mint.client_secret (and no mint.assertion)"
            )
        if self.auth_mode == "jwt_bearer":
            if mint.assertion is None or mint.client_id or mint.client_secret:
                raise ValueError(
                    "auth_mode jwt_bearer needs mint.assertion (and no client_id/client_secret)"
                )
            key_field = next(
                (f for f in self.credentials if f.name == mint.assertion.private_key), None
            )
            if key_field is None or not key_field.secret:
                raise ValueError(
                    f"mint.assertion.private_key names {mint.assertion.private_key!r}, which "
                    "must be a secret credentials field"
                )
        for name, text in mint.templates():
            for variable in TEMPLATE_VARIABLE.findall(text):
                if variable not in self.credential_names:
                    raise ValueError(f"{name} uses {{{variable}}}, which is no credentials field")

    def _check_api_base_url(self, declared: set[str]) -> None:
        """``api_base_url`` uses integration params and patterned metadata only; a metadata
        value may be the whole origin, an integration param never (it would choose the host
        without being one of the host params an admin sets)."""
        unknown = sorted(set(self.metadata_patterns) - self.metadata_names)
        if unknown:
            raise ValueError(
                f"metadata_patterns.{unknown[0]} names no kept metadata (token_metadata or "
                "callback_metadata)"
            )
        if self.api_base_url is None:
            return
        origin = LEADING_ORIGIN.match(self.api_base_url)
        if origin and origin.group(1) not in self.metadata_patterns:
            raise ValueError(
                f"api_base_url starts with {{{origin.group(1)}}}: only provider metadata with a "
                "metadata_patterns entry may stand for the whole origin"
            )
        for variable in TEMPLATE_VARIABLE.findall(self.api_base_url):
            if variable in BUILTIN_VARIABLES or (
                variable not in declared and variable not in self.metadata_patterns
            ):
                raise ValueError(
                    f"api_base_url uses {{{variable}}}, which is neither an integration_param "
                    "nor provider metadata with a metadata_patterns entry"
                )

    def _label_only(self, name: str) -> bool:
        """Every host ``name`` appears in is ``{name}`` as the first label of a fixed domain."""
        urls = [text for _, text in self._templated_strings()]
        if self.revocation is not None:
            urls.append(self.revocation.url)
        label = re.compile(_LABEL_UNDER_DOMAIN % re.escape(name))
        for text in urls:
            match = _AUTHORITY.match(text)
            if match and f"{{{name}}}" in match.group(1) and not label.match(match.group(1)):
                return False
        return True

    def _templated_strings(self) -> list[tuple[str, str]]:
        found = [(name, getattr(self, name)) for name in URL_FIELDS if getattr(self, name)]
        if self.userinfo and self.userinfo.url:
            found.append(("userinfo.url", self.userinfo.url))
        if self.userinfo and self.userinfo.email_fallback:
            found.append(("userinfo.email_fallback.url", self.userinfo.email_fallback.url))
        if self.test_request:
            found.append(("test_request.url", self.test_request.url))
        found.extend((f"authorization_params.{k}", v) for k, v in self.authorization_params.items())
        return found

    @property
    def uses_discovery(self) -> bool:
        return self.discovery_url is not None

    def join_scopes(self, scopes: list[str]) -> str:
        return self.scope_separator.join(scopes)


def providers_file_schema() -> dict[str, Any]:
    """The JSON Schema of a providers file (``{key: entry}``), for editors and CI.

    Committed as ``provider.schema.json`` and regenerated by ``connectors providers schema``;
    a test keeps the two equal. ``key`` is the mapping key in a file, so it is no entry field.
    """
    schema = TypeAdapter(dict[str, ProviderEntry]).json_schema(ref_template="#/$defs/{model}")
    entry = schema["$defs"]["ProviderEntry"]
    entry["properties"].pop("key")
    entry["required"] = [name for name in entry.get("required", []) if name != "key"]
    if not entry["required"]:
        entry.pop("required")
    schema["propertyNames"] = {"pattern": PROVIDER_KEY.pattern}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Personal Connectors providers file",
        "description": "Provider key -> catalog entry (SPEC §6). Entries for built-in keys "
        "override the built-in entry field by field.",
        **schema,
    }
