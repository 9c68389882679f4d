"""The built-in provider catalog (personal_connectors/providers/builtin/*.yaml).

These tests read the shipped catalog through ``load_catalog`` and fail when an entry is missing,
invalid, points a production URL anywhere but https, or declares a URL variable whose pattern
would let a hostile value change the host.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import yaml

from personal_connectors.providers.catalog import BUILTIN_CATALOG, Catalog, load_catalog
from personal_connectors.providers.schema import (
    BUILTIN_VARIABLES,
    LEADING_ORIGIN,
    REVOCATION_VARIABLES,
    TEMPLATE_VARIABLE,
    ProviderEntry,
)
from personal_connectors.providers.schema import URL_FIELDS as SCHEMA_URL_FIELDS
from personal_connectors.providers.templating import fill, validate_integration_params

REQUIRED_KEYS = (
    "github",
    "gitlab",
    "bitbucket",
    "atlassian",
    "jira",
    "confluence",
    "clickup",
    "notion",
    "slack",
    "microsoft",
    "microsoft_teams",
    "outlook",
    "onedrive",
    "sharepoint",
    "google",
    "google_drive",
    "gmail",
    "google_calendar",
    "dropbox",
    "box",
    "linear",
    "asana",
    "monday",
    "hubspot",
    "salesforce",
    "zendesk",
    "intercom",
    "zoom",
    "figma",
    "airtable",
    "discord",
    "spotify",
    "todoist",
    "miro",
    "calendly",
    "pipedrive",
    "xero",
    "quickbooks",
    "shopify",
    "stripe",
    "typeform",
    "webflow",
    "canva",
    "strava",
    "twitch",
    "reddit",
    "digitalocean",
    "oidc",
)
CATEGORIES = {
    "development",
    "productivity",
    "communication",
    "storage",
    "crm",
    "support",
    "design",
    "finance",
    "commerce",
    "marketing",
    "social",
    "media",
    "identity",
    "other",
}
# Every URL an entry holds: the schema's URL fields plus the two descriptive ones.
URL_FIELDS = (*SCHEMA_URL_FIELDS, "icon_url", "docs_url")
# Values that must never pass a URL-variable pattern: each would move the request to another
# host, path, port or user-info, or smuggle a query or fragment.
HOSTILE_VALUES = (
    "",
    "evil.com/",
    "evil.com/x",
    "a/b",
    "a?b=c",
    "a#b",
    "a@evil.com",
    "a:443",
    "a b",
    "a\nb",
    "..",
    "a\\b",
    "%2e",
    "x.evil.com/",
)
# URL variables that stand for a single host label or a tenant id (no dots except the
# documented onmicrosoft.com form): a second-level host must not get through.
LABEL_LIKE = {("zendesk", "subdomain"), ("shopify", "shop")}
LEGIT_EXAMPLES = {
    ("zendesk", "subdomain"): ["acme", "acme-support", "a1"],
    ("shopify", "shop"): ["acme", "acme-store", "shop123"],
    ("microsoft", "tenant"): [
        "common",
        "organizations",
        "consumers",
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "contoso.onmicrosoft.com",
    ],
    ("oidc", "issuer_host"): ["login.example.com", "accounts.google.com", "idp.example.co.uk"],
}
HOSTILE_EXAMPLES = {
    ("zendesk", "subdomain"): ["evil.com/", "a.evil.com", "evil.com", "acme.zendesk.com", "-acme"],
    ("shopify", "shop"): [
        "evil.com/",
        "a.evil.com",
        "acme.myshopify.com",
        "acme/admin",
        "Acme Store",
    ],
    ("microsoft", "tenant"): [
        "evil.com/",
        "a.evil.com",
        "evil.com",
        "common/",
        "x.evil.com/a.onmicrosoft.com",
        "a.b.onmicrosoft.com",
        "contoso.onmicrosoft.com.evil.com",
        "72f988bf-86f1-41af-91ab",
    ],
    ("oidc", "issuer_host"): [
        "evil.com/",
        "https://evil.com",
        "evil.com:8443",
        "user@evil.com",
        "evil.com/.well-known",
        "127.0.0.1",
        "localhost",
        "evil.com?x=1",
    ],
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def all_entries() -> list[ProviderEntry]:
    return list(load_catalog())


def entry_ids(entries: list[ProviderEntry]) -> list[str]:
    return [entry.key for entry in entries]


ENTRIES = all_entries()


# Stands for an api_base_url's whole-origin metadata value (Salesforce's `{instance_url}`),
# which its metadata pattern judges (test_metadata_origins_stay_on_the_providers_domain).
METADATA_ORIGIN = "https://metadata.example.com"


def templated_urls(entry: ProviderEntry) -> list[tuple[str, str]]:
    urls = [(name, getattr(entry, name)) for name in URL_FIELDS if getattr(entry, name)]
    urls = [
        (name, LEADING_ORIGIN.sub(METADATA_ORIGIN, url) if name == "api_base_url" else url)
        for name, url in urls
    ]
    if entry.userinfo and entry.userinfo.url:
        urls.append(("userinfo.url", entry.userinfo.url))
    if entry.userinfo and entry.userinfo.email_fallback:
        urls.append(("userinfo.email_fallback.url", entry.userinfo.email_fallback.url))
    if entry.test_request:
        urls.append(("test_request.url", entry.test_request.url))
    if entry.revocation:
        urls.append(("revocation.url", entry.revocation.url))
    return urls


def probe(url: str) -> str:
    """The URL with every {variable} replaced by a harmless host label."""
    return TEMPLATE_VARIABLE.sub("x", url)


# --- the catalog as a whole -------------------------------------------------------------------


def test_catalog_loads_and_validates(catalog: Catalog) -> None:
    assert isinstance(catalog, Catalog)
    assert all(isinstance(entry, ProviderEntry) for entry in catalog)


def test_catalog_has_at_least_forty_entries(catalog: Catalog) -> None:
    assert len(catalog) >= 40


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_required_provider_is_present(catalog: Catalog, key: str) -> None:
    assert key in catalog, f"built-in catalog lacks {key!r}"
    assert catalog.get(key) is not None
    assert catalog.get(key).key == key  # type: ignore[union-attr]


def test_keys_are_snake_case(catalog: Catalog) -> None:
    for entry in catalog:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", entry.key), entry.key


# --- every entry ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES, ids=entry_ids(ENTRIES))
def test_entry_has_docs_and_identity(entry: ProviderEntry) -> None:
    assert entry.docs_url, f"{entry.key}: docs_url missing"
    assert entry.description, f"{entry.key}: description missing"
    assert entry.category in CATEGORIES, f"{entry.key}: unknown category {entry.category!r}"
    if entry.discovery_url is None and entry.auth_mode == "oauth2":
        assert entry.userinfo is not None, f"{entry.key}: no identity mapping"
        assert entry.userinfo.url or entry.userinfo.from_token_response, entry.key
        assert entry.authorization_url and entry.token_url, entry.key
    assert entry.userinfo is None or entry.userinfo.id_path, entry.key


@pytest.mark.parametrize("entry", ENTRIES, ids=entry_ids(ENTRIES))
def test_every_production_url_is_https(entry: ProviderEntry) -> None:
    for name, url in templated_urls(entry):
        parts = urlsplit(probe(url))
        assert parts.scheme == "https", f"{entry.key}.{name} is not https: {url}"
        assert parts.hostname, f"{entry.key}.{name}: {url}"
        if not TEMPLATE_VARIABLE.search(url):
            assert "." in parts.hostname, f"{entry.key}.{name}: {url}"
        assert not parts.username and not parts.password, f"{entry.key}.{name}: {url}"
        assert parts.port is None, f"{entry.key}.{name} names a port: {url}"


@pytest.mark.parametrize("entry", ENTRIES, ids=entry_ids(ENTRIES))
def test_url_variables_are_declared_with_patterns(entry: ProviderEntry) -> None:
    strings = [url for _, url in templated_urls(entry)]
    strings += list(entry.authorization_params.values())
    used = {var for text in strings for var in TEMPLATE_VARIABLE.findall(text)}
    for variable in used - BUILTIN_VARIABLES:
        assert variable in entry.integration_params, f"{entry.key}: {{{variable}}} undeclared"
        spec = entry.integration_params[variable]
        assert spec.pattern.startswith("^") and spec.pattern.endswith("$"), (entry.key, variable)
        assert spec.required or spec.default, f"{entry.key}: URL variable {variable!r} may be unset"
        if spec.default is not None:
            assert re.fullmatch(spec.pattern, spec.default), (entry.key, variable)
        assert spec.example and re.fullmatch(spec.pattern, spec.example), (entry.key, variable)
        for hostile in HOSTILE_VALUES:
            assert not re.fullmatch(spec.pattern, hostile), (entry.key, variable, hostile)
        if (entry.key, variable) in LABEL_LIKE:
            assert not re.fullmatch(spec.pattern, "a.evil.com"), (entry.key, variable)
    # A declared variable that no URL uses would be a typo.
    assert set(entry.integration_params) <= used, entry.key


@pytest.mark.parametrize("entry", ENTRIES, ids=entry_ids(ENTRIES))
def test_variables_sit_in_the_host_or_a_whole_path_segment(entry: ProviderEntry) -> None:
    """A user-supplied variable fills part of the host or one whole path segment, nothing else."""
    for name, url in templated_urls(entry):
        assert url.startswith("https://"), (entry.key, name)
        host_end = url.find("/", len("https://"))
        host_end = len(url) if host_end == -1 else host_end
        for match in TEMPLATE_VARIABLE.finditer(url):
            if match.group(1) in BUILTIN_VARIABLES:
                continue
            in_host = match.start() < host_end
            whole_segment = url[match.start() - 1] == "/" and url[
                match.end() : match.end() + 1
            ] in ("/", "")
            assert in_host or whole_segment, f"{entry.key}.{name}: {match.group(0)} misplaced"
            assert "?" not in url[: match.start()], f"{entry.key}.{name}: variable in the query"


@pytest.mark.parametrize("entry", ENTRIES, ids=entry_ids(ENTRIES))
def test_revocation_uses_only_service_values(entry: ProviderEntry) -> None:
    assert not (entry.revocation and entry.revocation_url), f"{entry.key}: two revocation ways"
    if entry.revocation:
        texts = [text for _, text in entry.revocation.templated_strings()]
        used = {var for text in texts for var in TEMPLATE_VARIABLE.findall(text)}
        allowed = REVOCATION_VARIABLES | entry.metadata_names
        assert used <= allowed, f"{entry.key}: revocation uses {used - allowed}"


@pytest.mark.parametrize(
    "entry",
    [e for e in ENTRIES if e.discovery_url is None],
    ids=entry_ids([e for e in ENTRIES if e.discovery_url is None]),
)
def test_static_entries_have_a_read_only_test_request(entry: ProviderEntry) -> None:
    assert entry.test_request is not None, f"{entry.key}: no test_request"
    if entry.test_request.method == "POST":
        # Only read-only GraphQL/RPC reads are allowed as POST test requests.
        body = entry.test_request.body or {}
        assert "mutation" not in str(body.get("query", "")), entry.key


@pytest.mark.parametrize("entry", ENTRIES, ids=entry_ids(ENTRIES))
def test_scopes_are_well_formed(entry: ProviderEntry) -> None:
    assert len(entry.default_scopes) == len(set(entry.default_scopes)), entry.key
    for scope in entry.default_scopes:
        assert scope and " " not in scope and entry.scope_separator not in scope, (entry.key, scope)


# --- provider quirks --------------------------------------------------------------------------


def test_slack_tokens_are_read_from_authed_user(catalog: Catalog) -> None:
    slack = catalog.get("slack")
    assert slack is not None and slack.token_response is not None
    assert slack.token_response.access_token == "authed_user.access_token"
    assert slack.token_response.refresh_token.startswith("authed_user.")
    assert slack.authorization_url == "https://slack.com/oauth/v2/authorize"
    assert slack.scope_separator == ","
    assert slack.pkce is False
    assert slack.scope_param == "user_scope" and "users:read" in slack.default_scopes
    assert slack.token_metadata["team_id"] == "team.id"
    assert slack.revocation is not None and slack.revocation.url.endswith("/auth.revoke")


def test_clickup_returns_state(catalog: Catalog) -> None:
    """ClickUp's docs show `state` on its authorize URL and never say it is dropped."""
    clickup = catalog.get("clickup")
    assert clickup is not None
    assert clickup.returns_state is True
    assert clickup.supports_refresh is False
    assert clickup.pkce is False


def test_google_asks_for_offline_access(catalog: Catalog) -> None:
    for key in ("google", "google_drive", "gmail", "google_calendar"):
        entry = catalog.get(key)
        assert entry is not None
        assert entry.authorization_params.get("access_type") == "offline", key
        assert entry.authorization_params.get("prompt") == "consent", key
        assert entry.authorization_params.get("include_granted_scopes") == "true", key
        assert entry.revocation_url == "https://oauth2.googleapis.com/revoke", key


def test_atlassian_family_sets_audience_and_consent(catalog: Catalog) -> None:
    for key in ("atlassian", "jira", "confluence"):
        entry = catalog.get(key)
        assert entry is not None
        assert entry.authorization_url == "https://auth.atlassian.com/authorize", key
        assert entry.authorization_params == {"audience": "api.atlassian.com", "prompt": "consent"}
        assert "offline_access" in entry.default_scopes, key


def test_notion_uses_basic_auth_and_owner_user(catalog: Catalog) -> None:
    notion = catalog.get("notion")
    assert notion is not None
    assert notion.token_endpoint_auth_method == "client_secret_basic"
    assert notion.authorization_params.get("owner") == "user"
    assert notion.userinfo is not None and notion.userinfo.id_path.startswith("owner.user.")


def test_microsoft_family_shares_the_tenant_parameter(catalog: Catalog) -> None:
    for key in ("microsoft", "microsoft_teams", "outlook", "onedrive", "sharepoint"):
        entry = catalog.get(key)
        assert entry is not None
        assert "{tenant}" in (entry.authorization_url or ""), key
        assert "{tenant}" in (entry.token_url or ""), key
        assert entry.integration_params["tenant"].default == "common", key
        assert re.fullmatch(entry.integration_params["tenant"].pattern, "common"), key


@pytest.mark.parametrize(("key", "variable"), sorted(LEGIT_EXAMPLES))
def test_variable_pattern_accepts_legitimate_values(
    catalog: Catalog, key: str, variable: str
) -> None:
    entry = catalog.get(key)
    assert entry is not None
    pattern = entry.integration_params[variable].pattern
    for value in LEGIT_EXAMPLES[(key, variable)]:
        assert re.fullmatch(pattern, value), (key, variable, value)


@pytest.mark.parametrize(("key", "variable"), sorted(HOSTILE_EXAMPLES))
def test_variable_pattern_refuses_hostile_values(catalog: Catalog, key: str, variable: str) -> None:
    entry = catalog.get(key)
    assert entry is not None
    pattern = entry.integration_params[variable].pattern
    for value in HOSTILE_EXAMPLES[(key, variable)]:
        assert not re.fullmatch(pattern, value), (key, variable, value)


def test_zendesk_and_shopify_urls_stay_on_their_domains(catalog: Catalog) -> None:
    zendesk, shopify = catalog.get("zendesk"), catalog.get("shopify")
    assert zendesk is not None and shopify is not None
    for url in (zendesk.authorization_url, zendesk.token_url, zendesk.userinfo.url):  # type: ignore[union-attr]
        assert urlsplit(probe(url or "")).hostname == "x.zendesk.com", url
    for url in (shopify.authorization_url, shopify.token_url, shopify.userinfo.url):  # type: ignore[union-attr]
        assert urlsplit(probe(url or "")).hostname == "x.myshopify.com", url
    assert shopify.authorization_url == "https://{shop}.myshopify.com/admin/oauth/authorize"


def test_oidc_is_driven_by_discovery(catalog: Catalog) -> None:
    oidc = catalog.get("oidc")
    assert oidc is not None
    assert oidc.discovery_url == "https://{issuer_host}/.well-known/openid-configuration"
    assert oidc.authorization_url is None and oidc.token_url is None
    assert "openid" in oidc.default_scopes
    assert "issuer_host" in oidc.integration_params


def test_pkce_required_providers_enable_it(catalog: Catalog) -> None:
    for key in ("airtable", "canva"):
        entry = catalog.get(key)
        assert entry is not None and entry.pkce is True, key


def test_refresh_token_parameters(catalog: Catalog) -> None:
    dropbox, reddit, xero = catalog.get("dropbox"), catalog.get("reddit"), catalog.get("xero")
    assert dropbox is not None and dropbox.authorization_params["token_access_type"] == "offline"
    assert reddit is not None and reddit.authorization_params["duration"] == "permanent"
    assert reddit.token_endpoint_auth_method == "client_secret_basic"
    assert xero is not None and "offline_access" in xero.default_scopes


def test_github_revokes_its_grant_with_client_basic(catalog: Catalog) -> None:
    github = catalog.get("github")
    assert github is not None and github.revocation is not None
    assert github.revocation.method == "DELETE"
    assert github.revocation.url == "https://api.github.com/applications/{client_id}/grant"
    assert github.revocation.auth == "client_basic"
    assert github.revocation.body == {"access_token": "{access_token}"}


def test_stripe_identity_comes_from_the_token_answer(catalog: Catalog) -> None:
    stripe = catalog.get("stripe")
    assert stripe is not None and stripe.userinfo is not None
    assert stripe.userinfo.from_token_response is True
    assert stripe.userinfo.id_path == "stripe_user_id"


def test_comma_separated_scope_providers(catalog: Catalog) -> None:
    for key in ("slack", "strava", "todoist", "linear"):
        entry = catalog.get(key)
        assert entry is not None and entry.scope_separator == ",", key


def test_providers_without_refresh_tokens(catalog: Catalog) -> None:
    for key in ("clickup", "intercom", "webflow"):
        entry = catalog.get(key)
        assert entry is not None and entry.supports_refresh is False, key


def test_recorded_schema_gaps_are_closed(catalog: Catalog) -> None:
    """Each quirk that once needed a 'the schema cannot …' comment is now data."""
    figma = catalog.get("figma")
    assert figma is not None and figma.supports_refresh
    assert figma.refresh_url == "https://api.figma.com/v1/oauth/refresh"
    for key in ("salesforce", "salesforce_sandbox"):
        assert catalog.get(key).token_metadata["instance_url"] == "instance_url"  # type: ignore[union-attr]
    assert catalog.get("quickbooks").callback_metadata == ["realmId"]  # type: ignore[union-attr]
    stripe = catalog.get("stripe")
    assert stripe is not None and stripe.revocation is not None
    assert stripe.revocation.body["stripe_user_id"] == "{stripe_user_id}"
    assert "stripe_user_id" in stripe.metadata_names
    notion = catalog.get("notion")
    assert notion is not None and notion.revocation is not None
    assert notion.revocation.headers == {"Notion-Version": "2025-09-03"}
    revocation = catalog.get("webflow").revocation  # type: ignore[union-attr]
    assert revocation is not None
    assert "{client_secret}" in [*revocation.query.values(), *revocation.body.values()]
    shopify = catalog.get("shopify")
    assert shopify is not None and shopify.userinfo is not None
    assert shopify.userinfo.headers == {"X-Shopify-Access-Token": "{access_token}"}
    microsoft = catalog.get("microsoft")
    assert microsoft is not None and microsoft.userinfo is not None
    assert microsoft.userinfo.email_path == ["mail", "userPrincipalName"]
    # No comment in the shipped file still says the schema cannot express something.
    text = "".join(path.read_text() for path in BUILTIN_CATALOG.glob("*.yaml"))
    assert "schema cannot" not in text and "cannot carry" not in text and "cannot send" not in text


# --- revocation and identity as the providers document them ------------------------------------


def test_rfc7009_revocation_authenticates_as_each_provider_documents(catalog: Catalog) -> None:
    """Calendly wants the client credentials in the body, Todoist HTTP Basic at its own RFC 7009
    endpoint, HubSpot v3 the credentials in the body; each unlike or beside its token endpoint."""
    calendly, todoist, hubspot = (catalog.get(k) for k in ("calendly", "todoist", "hubspot"))
    assert calendly is not None and todoist is not None and hubspot is not None
    assert calendly.revocation_url == "https://auth.calendly.com/oauth/revoke"
    assert calendly.token_endpoint_auth_method == "client_secret_basic"
    assert calendly.revocation_auth_method == "client_secret_post"
    assert todoist.revocation is None
    assert todoist.revocation_url == "https://api.todoist.com/api/v1/revoke"
    assert todoist.token_endpoint_auth_method == "client_secret_post"
    assert todoist.revocation_auth_method == "client_secret_basic"
    assert hubspot.revocation is None
    assert hubspot.revocation_url == "https://api.hubapi.com/oauth/v3/token/revoke"
    assert hubspot.revocation_auth_method == "client_secret_post"


def test_no_entry_calls_hubspot_v1_oauth(catalog: Catalog) -> None:
    """HubSpot retires /oauth/v1 on 2027-02-16; identity is the v3 introspection."""
    hubspot = catalog.get("hubspot")
    assert hubspot is not None and hubspot.userinfo is not None
    for name, url in templated_urls(hubspot):
        assert "/oauth/v1/" not in url, name
    assert hubspot.userinfo.url == "https://api.hubapi.com/oauth/v3/token/introspect"
    assert hubspot.userinfo.method == "POST" and hubspot.userinfo.body_format == "form"
    assert hubspot.userinfo.body == {
        "client_id": "{client_id}",
        "client_secret": "{client_secret}",
        "token": "{access_token}",
        "token_type_hint": "access_token",
    }
    assert (hubspot.userinfo.id_path, hubspot.userinfo.email_path) == ("user_id", "user")


def test_discord_names_its_issuer(catalog: Catalog) -> None:
    discord = catalog.get("discord")
    assert discord is not None and discord.issuer == "https://discord.com"


def test_github_takes_the_primary_verified_email_from_user_emails(catalog: Catalog) -> None:
    github = catalog.get("github")
    assert github is not None and github.userinfo is not None
    fallback = github.userinfo.email_fallback
    assert fallback is not None
    assert fallback.url == "https://api.github.com/user/emails"
    assert fallback.list_path is None and fallback.email_field == "email"
    assert fallback.require == ["primary", "verified"]
    assert "user:email" in github.default_scopes


# --- the API each connection calls (api_base_url, api_auth) ------------------------------------

# Entries without an api_base_url, each with the reason.
NO_API_BASE_URL = {
    "docusign": "each account's API host (base_uri) is in the userinfo answer, not kept",
    "oidc": "a generic OpenID issuer names no API",
}
# Salesforce's comes from the org's instance_url (provider metadata), set by other work: an
# entry there may have one or not, and when it has one it must render on Salesforce's domain.
METADATA_BASE_URL = {"salesforce", "salesforce_sandbox"}
# Legitimate values for provider-metadata variables an api_base_url may use.
SAMPLE_METADATA = {"instance_url": "https://acme.my.salesforce.com"}
# The registrable domain each provider's API lives on (its own, never a third party's).
API_DOMAINS = {
    "github": "github.com",
    "gitlab": "gitlab.com",
    "bitbucket": "bitbucket.org",
    "atlassian": "atlassian.com",
    "jira": "atlassian.com",
    "confluence": "atlassian.com",
    "linear": "linear.app",
    "digitalocean": "digitalocean.com",
    "heroku": "heroku.com",
    "clickup": "clickup.com",
    "notion": "notion.com",
    "asana": "asana.com",
    "monday": "monday.com",
    "todoist": "todoist.com",
    "miro": "miro.com",
    "calendly": "calendly.com",
    "airtable": "airtable.com",
    "typeform": "typeform.com",
    "slack": "slack.com",
    "microsoft": "microsoft.com",
    "microsoft_teams": "microsoft.com",
    "outlook": "microsoft.com",
    "onedrive": "microsoft.com",
    "sharepoint": "microsoft.com",
    "discord": "discord.com",
    "zoom": "zoom.us",
    "intercom": "intercom.io",
    "dropbox": "dropboxapi.com",
    "box": "box.com",
    "google": "googleapis.com",
    "google_drive": "googleapis.com",
    "gmail": "googleapis.com",
    "google_calendar": "googleapis.com",
    "google_sheets": "googleapis.com",
    "youtube": "googleapis.com",
    "hubspot": "hubapi.com",
    "salesforce": "salesforce.com",
    "salesforce_sandbox": "salesforce.com",
    "pipedrive": "pipedrive.com",
    "zendesk": "zendesk.com",
    "figma": "figma.com",
    "canva": "canva.com",
    "webflow": "webflow.com",
    "xero": "xero.com",
    "quickbooks": "intuit.com",
    "stripe": "stripe.com",
    "shopify": "myshopify.com",
    "spotify": "spotify.com",
    "strava": "strava.com",
    "twitch": "twitch.tv",
    "reddit": "reddit.com",
    "linkedin": "linkedin.com",
    "x": "x.com",
}
# The entries of oauth.yaml (other files of the folder hold other kinds of connector).
OAUTH_FILE_KEYS = set(yaml.safe_load((BUILTIN_CATALOG / "oauth.yaml").read_text()))
OAUTH_ENTRIES = [e for e in ENTRIES if e.key in OAUTH_FILE_KEYS]


def rendered_api_base_url(entry: ProviderEntry) -> str:
    """The api_base_url filled with legitimate values, through the service's own checks."""
    assert entry.api_base_url is not None
    given = {name: spec.example for name, spec in entry.integration_params.items() if spec.example}
    params = validate_integration_params(entry, given)
    return fill(entry.api_base_url, {**SAMPLE_METADATA, **params})


@pytest.mark.parametrize("entry", OAUTH_ENTRIES, ids=entry_ids(OAUTH_ENTRIES))
def test_every_oauth_entry_has_an_api_base_url_on_its_own_domain(entry: ProviderEntry) -> None:
    if entry.key in NO_API_BASE_URL:
        assert entry.api_base_url is None, f"{entry.key} has one now: drop it from the list"
        return
    if entry.api_base_url is None:
        assert entry.key in METADATA_BASE_URL, f"{entry.key}: api_base_url missing"
        return
    url = rendered_api_base_url(entry)
    parts = urlsplit(url)
    domain = API_DOMAINS[entry.key]
    assert parts.scheme == "https", url
    assert parts.hostname == domain or (parts.hostname or "").endswith("." + domain), url
    assert not TEMPLATE_VARIABLE.search(url) and not parts.query and not parts.fragment, url
    assert not url.endswith("/"), f"{entry.key}: paths are joined after it"


def test_the_exempt_list_names_only_real_entries(catalog: Catalog) -> None:
    assert set(NO_API_BASE_URL) | METADATA_BASE_URL <= {entry.key for entry in catalog}
    assert {entry.key for entry in OAUTH_ENTRIES} <= set(API_DOMAINS) | set(NO_API_BASE_URL)


def test_templated_api_base_urls_render_with_legitimate_params(catalog: Catalog) -> None:
    """Zendesk's {subdomain} and Shopify's {shop} land in the host, under the provider's domain."""
    zendesk, shopify = catalog.get("zendesk"), catalog.get("shopify")
    assert zendesk is not None and shopify is not None
    for value in LEGIT_EXAMPLES[("zendesk", "subdomain")]:
        url = fill(
            zendesk.api_base_url or "", validate_integration_params(zendesk, {"subdomain": value})
        )
        assert url == f"https://{value}.zendesk.com/api/v2"
    for value in LEGIT_EXAMPLES[("shopify", "shop")]:
        url = fill(
            shopify.api_base_url or "", validate_integration_params(shopify, {"shop": value})
        )
        assert url == f"https://{value}.myshopify.com/admin/api/2026-01"


def test_api_auth_where_the_api_is_not_plain_bearer(catalog: Catalog) -> None:
    shopify, notion = catalog.get("shopify"), catalog.get("notion")
    assert shopify is not None and shopify.api_auth is not None
    assert shopify.api_auth.headers == {"X-Shopify-Access-Token": "{access_token}"}
    assert notion is not None and notion.api_auth is not None
    assert notion.api_auth.headers["Authorization"] == "Bearer {access_token}"
    assert notion.api_auth.headers["Notion-Version"]
    for entry in OAUTH_ENTRIES:
        if entry.api_auth is not None:  # every declared api_auth still carries the token
            assert any("{access_token}" in value for _, value in entry.api_auth.templates()), (
                entry.key
            )


HOSTILE_ORIGINS = (
    "https://evil.com",
    "http://acme.my.salesforce.com",
    "https://acme.my.salesforce.com.evil.com",
    "https://acme.my.salesforce.com/",
    "https://acme.my.salesforce.com:8443",
    "https://user@acme.my.salesforce.com",
    "https://evil.com#.salesforce.com",
    "https://evil.com/.salesforce.com",
    "https://evil.com?.salesforce.com",
    "https://127.0.0.1",
    "https://salesforce.com.evil.com",
    *HOSTILE_VALUES,
)


@pytest.mark.parametrize("key", ["salesforce", "salesforce_sandbox"])
def test_metadata_origins_stay_on_the_providers_domain(catalog: Catalog, key: str) -> None:
    """Salesforce's API host comes from the token answer (`instance_url`): the proxy uses it
    only while it is an https origin under salesforce.com."""
    entry = catalog.get(key)
    assert entry is not None and entry.api_base_url == "{instance_url}"
    pattern = entry.metadata_patterns["instance_url"]
    for legit in (
        "https://acme.my.salesforce.com",
        "https://acme--dev.sandbox.my.salesforce.com",
        "https://na1.salesforce.com",
    ):
        assert re.fullmatch(pattern, legit), legit
    for hostile in HOSTILE_ORIGINS:
        assert not re.fullmatch(pattern, hostile), hostile
