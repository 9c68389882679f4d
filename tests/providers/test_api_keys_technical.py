"""The built-in API-key and basic-auth entries for technical services (api-keys-technical.yaml).

AI model APIs, developer and infrastructure tools, e-mail and messaging APIs, data and search
(SPEC §6, §10). These tests read the shipped file and the loaded catalog, and fail when an entry
is missing what a credentials connection needs, would send a credential anywhere but its own
provider's https host, or declares a key format that refuses the keys the provider issues.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import pytest

from personal_connectors.providers.catalog import (
    BUILTIN_CATALOG,
    Catalog,
    check_file,
    load_catalog,
    read_entries,
)
from personal_connectors.providers.schema import TEMPLATE_VARIABLE, ProviderEntry
from personal_connectors.providers.templating import fill

FILE = BUILTIN_CATALOG / "api-keys-technical.yaml"
CATALOG: Catalog = load_catalog()
KEYS = sorted(read_entries(FILE))
ENTRIES: list[ProviderEntry] = [CATALOG.require(key) for key in KEYS]

# Values that match each documented key format (fields without a pattern take any value).
SAMPLES: Mapping[tuple[str, str], str] = {
    ("openrouter", "api_key"): "sk-or-v1-0123456789abcdef0123456789abcdef",
    ("replicate", "api_token"): "r8_" + "A1b2C3d4E5" * 3 + "f6G7h8i",
    ("tavily", "api_key"): "tvly-dev-0123456789abcdefABCDEF",
    ("resend", "api_key"): "re_123456789_AbCdEfGhIjKlMnOp",
    ("twilio", "account_sid"): "AC" + "0123456789abcdef" * 2,
    ("doppler", "api_key"): "dp.st.dev." + "bAqhcVzrhy5cRHkOlNTc0Ve6w5NUDCpcutm8vGE9myi",
}
# Values no documented key format admits: each would be a typo or a key of another kind.
REFUSED: Mapping[tuple[str, str], list[str]] = {
    ("openrouter", "api_key"): ["sk-proj-abc", "sk-or-v1-", "sk-or-v1-a b"],
    ("replicate", "api_token"): ["r8_short", "r9_" + "a" * 37, "r8_" + "a" * 38],
    ("tavily", "api_key"): ["tvly-", "sk-abc", "tvly-a b"],
    ("resend", "api_key"): ["re_", "rk_abc", "re_a\nb"],
    ("twilio", "account_sid"): ["SK" + "0" * 32, "AC" + "0" * 31, "AC" + "g" * 32],
    ("doppler", "api_key"): ["dp.scim." + "a" * 40, "dp.pt." + "a" * 39, "dp.pt.dev." + "a" * 40],
}
# Headers that carry no credential: constants a provider requires on every call.
CONSTANT_HEADERS = {
    ("anthropic", "anthropic-version"): "2023-06-01",
    ("pinecone", "X-Pinecone-Api-Version"): "2025-04",
    ("pagerduty", "Accept"): "application/vnd.pagerduty+json;version=2",
    ("postmark", "Accept"): "application/json",
    ("ngrok", "ngrok-version"): "2",
}
# Fields that name an account or token rather than prove it (the username half of Basic).
IDENTIFIERS = {("twilio", "account_sid"), ("mux", "token_id")}
# Keys the lead asked for by name (issue 13), present with the right mode.
EXPECTED_MODES = {
    "openai": "api_key",
    "anthropic": "api_key",
    "mistral": "api_key",
    "cohere": "api_key",
    "groq": "api_key",
    "elevenlabs": "api_key",
    "replicate": "api_key",
    "huggingface": "api_key",
    "vercel": "api_key",
    "netlify": "api_key",
    "cloudflare": "api_key",
    "sentry": "api_key",
    "datadog": "api_key",
    "pagerduty": "api_key",
    "postmark": "api_key",
    "sendgrid": "api_key",
    "resend": "api_key",
    "pinecone": "api_key",
    "supabase": "api_key",
    "neon": "api_key",
    "brave_search": "api_key",
    "tavily": "api_key",
    "firecrawl": "api_key",
    "mailgun": "basic",
    "twilio": "basic",
}


def ids(entries: list[ProviderEntry]) -> list[str]:
    return [entry.key for entry in entries]


def site(url: str) -> str:
    """The registrable domain of an https URL (the last two labels: no entry here needs more)."""
    host = urlsplit(url).hostname or ""
    return ".".join(host.split(".")[-2:])


def sample_values(entry: ProviderEntry) -> dict[str, str]:
    return {
        field.name: SAMPLES.get((entry.key, field.name), f"sample-{field.name}-0123456789")
        for field in entry.credentials
    }


def auth_templates(entry: ProviderEntry) -> list[tuple[str, str]]:
    """Every template that may carry a credential: api_auth and the headers of both calls."""
    assert entry.api_auth is not None and entry.test_request is not None
    found = entry.api_auth.templates()
    found += [(f"test_request.headers.{k}", v) for k, v in entry.test_request.headers.items()]
    if entry.userinfo is not None:
        found += [(f"userinfo.headers.{k}", v) for k, v in entry.userinfo.headers.items()]
    return found


def call_urls(entry: ProviderEntry) -> list[tuple[str, str]]:
    assert entry.api_base_url is not None and entry.test_request is not None
    urls = [("api_base_url", entry.api_base_url), ("test_request.url", entry.test_request.url)]
    if entry.userinfo is not None and entry.userinfo.url is not None:
        urls.append(("userinfo.url", entry.userinfo.url))
    return urls


# --- the file as a whole ----------------------------------------------------------------------


def test_the_file_adds_at_least_33_credentials_providers() -> None:
    assert len(KEYS) >= 33
    assert all(entry.auth_mode in ("api_key", "basic") for entry in ENTRIES)


def test_the_file_passes_the_providers_check() -> None:
    """What `connectors providers check` runs: every entry valid, merged over the built-ins."""
    checked = check_file(FILE)
    assert sorted(checked) == KEYS


def test_no_key_is_defined_in_another_builtin_file() -> None:
    for other in sorted(BUILTIN_CATALOG.glob("*.yaml")):
        if other != FILE:
            shared = set(read_entries(other)) & set(KEYS)
            assert not shared, f"{sorted(shared)} already in {other.name}"


@pytest.mark.parametrize(("key", "mode"), sorted(EXPECTED_MODES.items()))
def test_named_provider_is_present(key: str, mode: str) -> None:
    entry = CATALOG.get(key)
    assert entry is not None, f"catalog lacks {key!r}"
    assert entry.auth_mode == mode


# --- every entry ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES, ids=ids(ENTRIES))
def test_entry_declares_what_a_credentials_connection_needs(entry: ProviderEntry) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_]*", entry.key)
    assert entry.display_name and entry.description and entry.docs_url and entry.icon_url
    assert entry.credentials and entry.api_auth and entry.test_request and entry.api_base_url
    # The check is read-only: a GET, expecting success.
    assert entry.test_request.method == "GET" and entry.test_request.body is None
    assert entry.test_request.expect_status == [200]
    # Nothing of the authorization-code flow.
    assert entry.authorization_url is None and entry.token_url is None
    assert not entry.integration_params
    if entry.userinfo is not None:
        assert entry.userinfo.url and entry.userinfo.id_path


@pytest.mark.parametrize("entry", ENTRIES, ids=ids(ENTRIES))
def test_calls_stay_on_the_providers_own_https_domain(entry: ProviderEntry) -> None:
    values = sample_values(entry)
    domain = site(entry.api_base_url or "")
    for name, template in call_urls(entry):
        url = fill(template, values)
        parts = urlsplit(url)
        assert parts.scheme == "https", f"{entry.key}.{name}: {url}"
        assert parts.port is None and not parts.username and not parts.password, url
        assert site(url) == domain, f"{entry.key}.{name} leaves {domain}: {url}"
        # A credential never becomes part of a URL (URLs are logged, and could move the host).
        for value in values.values():
            assert value not in url, f"{entry.key}.{name} carries a credential"


@pytest.mark.parametrize("entry", ENTRIES, ids=ids(ENTRIES))
def test_descriptive_urls_are_https(entry: ProviderEntry) -> None:
    urls = [entry.docs_url, entry.icon_url] + [field.help_url for field in entry.credentials]
    for url in urls:
        assert url is not None and urlsplit(url).scheme == "https", (entry.key, url)
        assert urlsplit(url).hostname and "." in (urlsplit(url).hostname or ""), (entry.key, url)


@pytest.mark.parametrize("entry", ENTRIES, ids=ids(ENTRIES))
def test_templates_use_only_declared_fields_and_render(entry: ProviderEntry) -> None:
    values = sample_values(entry)
    for name, template in auth_templates(entry):
        used = set(TEMPLATE_VARIABLE.findall(template))
        assert used <= entry.credential_names, f"{entry.key}.{name} uses {used}"
        rendered = fill(template, values)
        assert "{" not in rendered and "}" not in rendered, (entry.key, name, rendered)
        assert "\n" not in rendered and "\r" not in rendered
    # Every field is sent somewhere: a declared field no call uses would be a typo.
    assert entry.api_auth is not None
    sent = {
        var for _, text in entry.api_auth.templates() for var in TEMPLATE_VARIABLE.findall(text)
    }
    assert sent == entry.credential_names, entry.key


@pytest.mark.parametrize("entry", ENTRIES, ids=ids(ENTRIES))
def test_the_check_and_identity_calls_send_what_api_auth_sends(entry: ProviderEntry) -> None:
    """The test_request proves the very credentials the proxy will send (same headers)."""
    assert entry.api_auth is not None and entry.test_request is not None
    calls = [entry.test_request.headers]
    if entry.userinfo is not None:
        calls.append(entry.userinfo.headers)
    if entry.auth_mode == "basic":
        assert entry.api_auth.basic is not None and not entry.api_auth.headers
        for headers in calls:
            assert "Authorization" not in headers, entry.key
    else:
        assert entry.api_auth.headers and entry.api_auth.basic is None
        assert not entry.api_auth.query, f"{entry.key}: credentials in a query string"
        for headers in calls:
            assert headers == entry.api_auth.headers, entry.key


@pytest.mark.parametrize("entry", ENTRIES, ids=ids(ENTRIES))
def test_credentials_are_secret_and_patterns_admit_real_keys(entry: ProviderEntry) -> None:
    assert any(field.secret for field in entry.credentials), entry.key
    for field in entry.credentials:
        assert field.label and field.help_url, (entry.key, field.name)
        if (entry.key, field.name) not in IDENTIFIERS:
            assert field.secret, f"{entry.key}.{field.name} must be secret"
        if field.pattern is None:
            assert (entry.key, field.name) not in SAMPLES, "a sample for a field without pattern"
            continue
        assert field.pattern.startswith("^") and field.pattern.endswith("$"), field.pattern
        assert re.fullmatch(field.pattern, SAMPLES[(entry.key, field.name)]), field.name
        for wrong in ["", "two words", *REFUSED[(entry.key, field.name)]]:
            assert not re.fullmatch(field.pattern, wrong), (entry.key, field.name, wrong)


# --- provider quirks --------------------------------------------------------------------------


@pytest.mark.parametrize(("where", "value"), sorted(CONSTANT_HEADERS.items()))
def test_required_constant_headers_are_sent(where: tuple[str, str], value: str) -> None:
    key, header = where
    entry = CATALOG.require(key)
    assert entry.api_auth is not None and entry.test_request is not None
    assert entry.api_auth.headers[header] == value
    assert entry.test_request.headers[header] == value


def test_schemes_other_than_bearer_are_kept_as_documented() -> None:
    def auth_header(key: str, name: str) -> str:
        api_auth = CATALOG.require(key).api_auth
        assert api_auth is not None
        return api_auth.headers[name]

    assert auth_header("pagerduty", "Authorization") == "Token token={api_key}"
    assert auth_header("deepgram", "Authorization") == "Token {api_key}"
    assert auth_header("anthropic", "x-api-key") == "{api_key}"
    assert auth_header("elevenlabs", "xi-api-key") == "{api_key}"
    assert auth_header("brave_search", "X-Subscription-Token") == "{api_key}"
    assert auth_header("circleci", "Circle-Token") == "{api_key}"
    assert auth_header("postmark", "X-Postmark-Server-Token") == "{server_key}"
    assert auth_header("datadog", "DD-APPLICATION-KEY") == "{application_key}"
    assert auth_header("assemblyai", "Authorization") == "{api_key}"


def test_basic_auth_entries_name_their_username() -> None:
    mailgun, twilio = CATALOG.require("mailgun").api_auth, CATALOG.require("twilio").api_auth
    assert mailgun is not None and mailgun.basic is not None
    assert (mailgun.basic.username, mailgun.basic.password) == ("api", "{api_key}")
    assert twilio is not None and twilio.basic is not None
    assert (twilio.basic.username, twilio.basic.password) == ("{account_sid}", "{auth_token}")
    mux = CATALOG.require("mux").api_auth
    assert mux is not None and mux.basic is not None
    assert (mux.basic.username, mux.basic.password) == ("{token_id}", "{token_secret}")


def test_identity_calls_read_the_documented_paths() -> None:
    expected = {
        "huggingface": ("id", "email"),
        "vercel": ("user.id", "user.email"),
        "terraform_cloud": ("data.id", "data.attributes.email"),
        "linode": ("uid", "email"),
        "apify": ("data.id", "data.email"),
        "neon": ("account_id", None),
    }
    for key, (id_path, email_path) in expected.items():
        userinfo = CATALOG.require(key).userinfo
        assert userinfo is not None, key
        assert (userinfo.id_path, userinfo.email_path) == (id_path, email_path), key
