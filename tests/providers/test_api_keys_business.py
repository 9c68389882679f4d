"""The built-in business entries connected with an API key or basic auth (SPEC §6, §10).

``personal_connectors/providers/builtin/api-keys-business.yaml``: CRM, marketing, support,
work tools, finance, HR, forms and analytics services. These tests read the shipped file and the
merged catalog and fail when an entry cannot be used as declared: a missing way to send or prove
the credentials, a call that could leave the provider's own domain, a credential shown in clear,
or a per-account host parameter that a hostile value could turn into another host.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from personal_connectors.exceptions import ValidationFailed
from personal_connectors.providers.catalog import BUILTIN_CATALOG, check_file, load_catalog
from personal_connectors.providers.schema import TEMPLATE_VARIABLE, ProviderEntry
from personal_connectors.providers.templating import fill, validate_integration_params

FILE = BUILTIN_CATALOG / "api-keys-business.yaml"

# The registrable domains each provider owns: the first is where its API lives (api_base_url,
# test_request, userinfo); docs, icon and help links may use any of them.
DOMAINS: dict[str, tuple[str, ...]] = {
    "pipedrive_api_token": ("pipedrive.com",),
    "close": ("close.com",),
    "copper": ("copper.com",),
    "attio": ("attio.com",),
    "apollo": ("apollo.io",),
    "mailchimp": ("mailchimp.com",),
    "klaviyo": ("klaviyo.com",),
    "kit": ("kit.com",),
    "brevo": ("brevo.com",),
    "beehiiv": ("beehiiv.com",),
    "freshdesk": ("freshdesk.com",),
    "front": ("frontapp.com", "front.com"),
    "gorgias": ("gorgias.com",),
    "airtable_pat": ("airtable.com",),
    "jira_api_token": ("atlassian.net", "atlassian.com"),
    "confluence_api_token": ("atlassian.net", "atlassian.com"),
    "toggl_track": ("toggl.com",),
    "clockify": ("clockify.me",),
    "trello": ("trello.com", "atlassian.com"),
    "stripe_api_key": ("stripe.com",),
    "paddle": ("paddle.com",),
    "lemon_squeezy": ("lemonsqueezy.com",),
    "chargebee": ("chargebee.com",),
    "xendit": ("xendit.co",),
    "recurly": ("recurly.com",),
    "mollie": ("mollie.com",),
    "paystack": ("paystack.co", "paystack.com"),
    "bamboohr": ("bamboohr.com",),
    "ashby": ("ashbyhq.com",),
    "typeform_pat": ("typeform.com",),
    "tally": ("tally.so",),
    "calendly_pat": ("calendly.com",),
    "cal_com": ("cal.com",),
    "jotform": ("jotform.com",),
    "posthog": ("posthog.com",),
    "mixpanel": ("mixpanel.com",),
}
# The only credentials fields shown in clear: who the key belongs to, or a key the provider
# documents as public (Trello's API key identifies the Power-Up; the token is the secret).
NOT_SECRET = {
    ("copper", "email"),
    ("gorgias", "email"),
    ("jira_api_token", "email"),
    ("confluence_api_token", "email"),
    ("trello", "api_key"),
    ("mixpanel", "username"),
}
# Values that must never pass a per-account host parameter: each would move the call to
# another host or smuggle a path, port, user-info, query or fragment into the URL.
HOSTILE_HOST_VALUES = (
    "",
    "a.b",
    "evil.com",
    "evil.com/",
    "x.evil.com/",
    "acme.freshdesk.com",
    "a/b",
    "a@evil.com",
    "a:443",
    "a?x=1",
    "a#b",
    "a b",
    "a\nb",
    "..",
    "%2e",
    "-acme",
)
# Documented key formats the entries check before any call (a prefix, nothing stricter).
GOOD_KEYS = {
    ("klaviyo", "api_key"): "pk_abc123def456",
    ("airtable_pat", "api_token"): "patAbC123.0123456789abcdef",
    ("stripe_api_key", "api_key"): "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    ("xendit", "api_key"): "xnd_development_P4qDfOss0OCpl8RtKrROHjaQYNCk9dN5lSfk+R1l9Wbe==",
    ("tally", "api_key"): "tly-abc123",
    ("mollie", "api_key"): "test_dHar4XY7LxsDOtmnkVtjNVWXLSlXsM",
    ("paystack", "api_key"): "sk_live_0123456789abcdef",
    ("cal_com", "api_key"): "cal_live_0123456789abcdef",
    ("posthog", "api_key"): "phx_IFdqdH62fKoax8x17bwu8gujE0tsTBZRvNmlMJ7eZxz",
}
BAD_KEYS = {
    ("klaviyo", "api_key"): "abc123",
    ("airtable_pat", "api_token"): "key0123456789",
    ("stripe_api_key", "api_key"): "pk_live_publishable",
    ("xendit", "api_key"): "xnd_public_development_abc",
    ("tally", "api_key"): "abc",
    ("mollie", "api_key"): "access_abc",
    ("paystack", "api_key"): "pk_live_0123",
    ("cal_com", "api_key"): "live_0123",
    ("posthog", "api_key"): "phc_projecttoken",
}

CATALOG = load_catalog()
ENTRIES: list[ProviderEntry] = [CATALOG.require(key) for key in DOMAINS]
IDS = [entry.key for entry in ENTRIES]


def registrable(host: str) -> str:
    """The last two labels: every provider here sits under a plain one-label suffix."""
    return ".".join(host.split(".")[-2:])


def sample_params(entry: ProviderEntry) -> dict[str, str]:
    examples = {name: spec.example for name, spec in entry.integration_params.items()}
    return validate_integration_params(entry, examples)


def api_urls(entry: ProviderEntry) -> list[tuple[str, str]]:
    assert entry.api_base_url and entry.test_request
    urls = [("api_base_url", entry.api_base_url), ("test_request.url", entry.test_request.url)]
    if entry.userinfo and entry.userinfo.url:
        urls.append(("userinfo.url", entry.userinfo.url))
    return urls


def host_of(url: str) -> str:
    parts = urlsplit(url)
    assert parts.scheme == "https", url
    assert parts.hostname and not parts.username and not parts.password, url
    assert parts.port is None, url
    return parts.hostname


# --- the file ---------------------------------------------------------------------------------


def test_the_file_holds_every_listed_entry_and_nothing_else() -> None:
    entries = check_file(FILE)  # what `connectors providers check` runs on it
    assert sorted(entries) == sorted(DOMAINS)
    assert len(entries) >= 33


def test_each_entry_is_introduced_by_a_comment_on_the_docs() -> None:
    lines = FILE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-z][a-z0-9_]*:\s*$", line):
            assert number > 0 and lines[number - 1].startswith("# "), line


def test_no_key_duplicates_another_built_in_file() -> None:
    for path in BUILTIN_CATALOG.glob("*.yaml"):
        if path != FILE:
            text = path.read_text(encoding="utf-8")
            for key in DOMAINS:
                assert not re.search(rf"^{re.escape(key)}:", text, re.MULTILINE), (path, key)


# --- every entry ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_entry_declares_how_credentials_are_sent_and_proved(entry: ProviderEntry) -> None:
    assert entry.auth_mode in ("api_key", "basic")
    assert entry.credentials and entry.api_auth and entry.test_request and entry.api_base_url
    assert entry.description and entry.docs_url and entry.icon_url
    # Basic auth is declared as such, and only by `basic` entries.
    assert (entry.api_auth.basic is not None) == (entry.auth_mode == "basic"), entry.key
    # api_auth carries at least one secret field: the credentials really are sent.
    used = {v for _, text in entry.api_auth.templates() for v in TEMPLATE_VARIABLE.findall(text)}
    secret = {field.name for field in entry.credentials if field.secret}
    assert used & secret, entry.key


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_check_and_identity_calls_send_what_api_auth_sends(entry: ProviderEntry) -> None:
    """A header that carries a credential is on the check and identity calls too, unchanged;
    no call names a field the entry does not declare."""
    assert entry.api_auth is not None and entry.test_request is not None
    names = entry.credential_names
    calls = [entry.test_request.headers]
    if entry.userinfo is not None:
        calls.append(entry.userinfo.headers)
    credential_headers = {
        name: value for name, value in entry.api_auth.headers.items() if "{" in value
    }
    for headers in calls:
        for name, value in credential_headers.items():
            assert headers.get(name) == value, (entry.key, name)
        for value in headers.values():
            assert set(TEMPLATE_VARIABLE.findall(value)) <= names, entry.key
        if entry.api_auth.basic is not None or entry.api_auth.query:
            # Basic and query credentials are applied from api_auth, never spelled out here.
            assert not any("{" in value for value in headers.values()), entry.key


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_api_calls_stay_on_the_providers_domain(entry: ProviderEntry) -> None:
    params = sample_params(entry)
    api_domain = DOMAINS[entry.key][0]
    for name, template in api_urls(entry):
        url = fill(template, params)
        assert not TEMPLATE_VARIABLE.search(url), (entry.key, name, url)
        assert registrable(host_of(url)) == api_domain, (entry.key, name, url)
    base = urlsplit(fill(entry.api_base_url or "", params))
    check = urlsplit(fill(entry.test_request.url, params))  # type: ignore[union-attr]
    assert base.hostname == check.hostname, entry.key


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_links_are_https_on_the_providers_own_domains(entry: ProviderEntry) -> None:
    links = [("docs_url", entry.docs_url), ("icon_url", entry.icon_url)]
    links += [(f"credentials.{f.name}.help_url", f.help_url) for f in entry.credentials]
    for name, url in links:
        if url is None:
            continue
        assert not TEMPLATE_VARIABLE.search(url), (entry.key, name)
        assert registrable(host_of(url)) in DOMAINS[entry.key], (entry.key, name, url)
    assert urlsplit(entry.icon_url or "").path.endswith("/favicon.ico"), entry.key


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_only_identifying_fields_are_shown_in_clear(entry: ProviderEntry) -> None:
    for field in entry.credentials:
        assert field.secret == ((entry.key, field.name) not in NOT_SECRET), (entry.key, field)
        assert field.label
    assert any(field.secret for field in entry.credentials), entry.key
    assert any(field.help_url for field in entry.credentials), entry.key


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_credentials_never_reach_a_url(entry: ProviderEntry) -> None:
    """URLs are logged and choose the host: only integration params may fill them."""
    for name, template in api_urls(entry):
        variables = set(TEMPLATE_VARIABLE.findall(template))
        assert variables <= set(entry.integration_params), (entry.key, name)
        assert not variables & entry.credential_names, (entry.key, name)


# --- per-account hosts ------------------------------------------------------------------------

HOST_PARAMS = [(entry, name) for entry in ENTRIES for name in sorted(entry.host_params)]


def test_per_account_hosts_are_declared_where_expected() -> None:
    assert {(entry.key, name) for entry, name in HOST_PARAMS} == {
        ("pipedrive_api_token", "company_domain"),
        ("mailchimp", "dc"),
        ("freshdesk", "subdomain"),
        ("gorgias", "subdomain"),
        ("jira_api_token", "site"),
        ("confluence_api_token", "site"),
        ("chargebee", "site"),
        ("jotform", "api_host"),
        ("posthog", "region"),
    }


@pytest.mark.parametrize(
    ("entry", "name"), HOST_PARAMS, ids=[f"{entry.key}.{name}" for entry, name in HOST_PARAMS]
)
def test_host_param_is_one_label_under_the_providers_domain(
    entry: ProviderEntry, name: str
) -> None:
    spec = entry.integration_params[name]
    assert spec.pattern.startswith("^") and spec.pattern.endswith("$")
    assert spec.example and re.fullmatch(spec.pattern, spec.example)
    for _, template in api_urls(entry):
        authority = urlsplit(TEMPLATE_VARIABLE.sub("x", template)).netloc
        if f"{{{name}}}" in template:
            # The variable is the first label of a fixed host under the provider's domain.
            assert template.startswith(f"https://{{{name}}}."), template
            assert registrable(authority) == DOMAINS[entry.key][0], template


@pytest.mark.parametrize(
    ("entry", "name"), HOST_PARAMS, ids=[f"{entry.key}.{name}" for entry, name in HOST_PARAMS]
)
def test_host_param_refuses_hostile_values(entry: ProviderEntry, name: str) -> None:
    pattern = entry.integration_params[name].pattern
    for hostile in HOSTILE_HOST_VALUES:
        assert not re.fullmatch(pattern, hostile), (entry.key, name, hostile)
        others = {n: s.example for n, s in entry.integration_params.items() if n != name}
        with pytest.raises(ValidationFailed):
            validate_integration_params(entry, {**others, name: hostile})


def test_site_labels_accept_the_documented_forms() -> None:
    cases = {
        ("freshdesk", "subdomain"): ["acme", "acme-support", "a1"],
        ("chargebee", "site"): ["acme", "acme-test"],
        ("jira_api_token", "site"): ["acme", "my-company"],
        ("mailchimp", "dc"): ["us6", "us21"],
        ("jotform", "api_host"): ["api", "eu-api", "hipaa-api"],
        ("posthog", "region"): ["us", "eu"],
    }
    for (key, name), values in cases.items():
        pattern = CATALOG.require(key).integration_params[name].pattern
        for value in values:
            assert re.fullmatch(pattern, value), (key, name, value)
    assert not re.fullmatch(CATALOG.require("mailchimp").integration_params["dc"].pattern, "us6.x")


# --- documented formats and quirks ------------------------------------------------------------


@pytest.mark.parametrize(("key", "field"), sorted(GOOD_KEYS), ids=[k for k, _ in sorted(GOOD_KEYS)])
def test_documented_key_formats(key: str, field: str) -> None:
    spec = next(f for f in CATALOG.require(key).credentials if f.name == field)
    assert spec.pattern is not None
    assert re.fullmatch(spec.pattern, GOOD_KEYS[(key, field)])
    assert not re.fullmatch(spec.pattern, BAD_KEYS[(key, field)])


def test_fields_without_a_documented_format_take_any_value() -> None:
    documented = {key for key, _ in GOOD_KEYS}
    for entry in ENTRIES:
        if entry.key not in documented:
            assert all(field.pattern is None for field in entry.credentials), entry.key


def test_basic_auth_as_each_provider_documents_it() -> None:
    def basic(key: str) -> tuple[str, str]:
        auth = CATALOG.require(key).api_auth
        assert auth is not None and auth.basic is not None
        return auth.basic.username, auth.basic.password

    assert basic("freshdesk") == ("{api_key}", "X")
    assert basic("bamboohr") == ("{api_key}", "x")
    assert basic("toggl_track") == ("{api_token}", "api_token")
    assert basic("mailchimp") == ("anystring", "{api_key}")
    for key in ("close", "stripe_api_key", "chargebee", "xendit", "recurly", "ashby"):
        assert basic(key) == ("{api_key}", ""), key
    for key in ("jira_api_token", "confluence_api_token", "gorgias"):
        assert basic(key) == ("{email}", "{api_token}" if key != "gorgias" else "{api_key}"), key
    assert basic("mixpanel") == ("{username}", "{secret}")


def test_header_schemes_as_each_provider_documents_them() -> None:
    def headers(key: str) -> dict[str, str]:
        auth = CATALOG.require(key).api_auth
        assert auth is not None
        return auth.headers

    assert headers("klaviyo")["Authorization"] == "Klaviyo-API-Key {api_key}"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", headers("klaviyo")["revision"])
    assert headers("pipedrive_api_token") == {"x-api-token": "{api_token}"}
    assert headers("kit") == {"X-Kit-Api-Key": "{api_key}"}
    assert headers("brevo") == {"api-key": "{api_key}"}
    assert headers("apollo") == {"x-api-key": "{api_key}"}
    assert headers("jotform") == {"APIKEY": "{api_key}"}
    assert headers("copper") == {
        "X-PW-AccessToken": "{api_key}",
        "X-PW-Application": "developer_api",
        "X-PW-UserEmail": "{email}",
    }
    assert headers("recurly")["Accept"].startswith("application/vnd.recurly.v")
    trello = CATALOG.require("trello").api_auth
    assert trello is not None and trello.query == {"key": "{api_key}", "token": "{api_token}"}


def test_rpc_style_check_call_is_a_read() -> None:
    ashby = CATALOG.require("ashby").test_request
    assert ashby is not None and ashby.method == "POST" and ashby.body == {}
    assert ashby.url.endswith("/apiKey.info")
    others = [e.key for e in ENTRIES if e.test_request and e.test_request.method != "GET"]
    assert others == ["ashby"]


def test_oauth_entries_keep_their_keys() -> None:
    """A service with both kinds keeps `stripe`, `jira`, … for OAuth; the key entry is suffixed."""
    for oauth_key, key_entry in [
        ("stripe", "stripe_api_key"),
        ("jira", "jira_api_token"),
        ("confluence", "confluence_api_token"),
        ("airtable", "airtable_pat"),
        ("pipedrive", "pipedrive_api_token"),
        ("typeform", "typeform_pat"),
        ("calendly", "calendly_pat"),
    ]:
        assert CATALOG.require(oauth_key).auth_mode == "oauth2"
        assert CATALOG.require(key_entry).auth_mode in ("api_key", "basic")


def test_file_path_is_the_one_the_catalog_reads() -> None:
    assert FILE.parent == BUILTIN_CATALOG and FILE.suffix == ".yaml"
    assert FILE in set(Path(BUILTIN_CATALOG).glob("*.yaml"))
