"""The connect page's form for credentials connectors (SPEC §10), over HTTP as a browser sends
it: labels, masked secret inputs and help links; same-origin and CSRF-checked; validated and
proved as ``POST /credentials``; secret values never sent back."""

from __future__ import annotations

import re

import httpx

from tests.conftest import Tenant
from tests.connect_page.conftest import browser, connectors_on, create_session, open_page
from tests.support.credentials_api import BASIC_API, EMAIL, KEY_API, CredentialsApi
from tests.support.service import ServiceProcess

FORM = f"/connect/credentials/{KEY_API}"


def form_csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert match, page
    return match.group(1)


def submit(
    client: httpx.Client, path: str, data: dict[str, str], *, origin: bool = True
) -> httpx.Response:
    headers = {"Origin": str(client.base_url).rstrip("/")} if origin else {}
    return client.post(path, data=data, headers=headers)


def test_the_page_offers_a_form_that_connects_with_an_api_key(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess, credentials_api: CredentialsApi
) -> None:
    client = browser(service)
    page = open_page(
        client, create_session(api, tenant, allowed_connectors=[KEY_API, BASIC_API])["connect_url"]
    )
    assert connectors_on(page.text) == [KEY_API, BASIC_API]
    assert f'href="{FORM}"' in page.text  # a link to the form, not the OAuth popup

    form = client.get(FORM)
    assert form.status_code == 200, form.text
    assert '<label for="field-api_key">API key</label>' in form.text
    assert 'name="field_api_key" type="password"' in form.text
    assert 'href="https://keyapi.example/settings/keys"' in form.text
    assert form.headers["referrer-policy"] == "same-origin"  # so the POST carries our Origin
    csrf = form_csrf(form.text)
    # The OAuth start for it sends the browser to the form instead.
    started = client.get(f"/connect/start/{KEY_API}", headers={"Sec-Fetch-Site": "same-origin"})
    assert started.status_code == 303 and started.headers["location"] == FORM

    key = credentials_api.api_key
    # Neither a foreign origin nor a missing CSRF token gets through.
    assert (
        submit(client, FORM, {"csrf_token": csrf, "field_api_key": key}, origin=False).status_code
        == 403
    )
    assert submit(client, FORM, {"field_api_key": key}).status_code == 403
    # Checked as the API checks: a malformed value names its field, a refused one says so;
    # the value is never written back into the page.
    malformed = submit(
        client, FORM, {"csrf_token": csrf, "field_api_key": "short-secret-value-0001"}
    )
    assert malformed.status_code == 400
    assert "Check these and try again: API key." in malformed.text
    assert (
        'aria-invalid="true"' in malformed.text and "short-secret-value-0001" not in malformed.text
    )
    refused_key = "kk_" + "q" * 30
    refused = submit(client, FORM, {"csrf_token": csrf, "field_api_key": refused_key})
    assert refused.status_code == 400 and "refused these credentials" in refused.text
    assert refused_key not in refused.text
    listed = api.get("", params={**tenant.org, "app_key": KEY_API}, headers=tenant.headers)
    assert listed.json() == []

    done = submit(client, FORM, {"csrf_token": csrf, "field_api_key": key})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"/connect?result=connected&connector={KEY_API}"
    [connection] = api.get(
        "", params={**tenant.org, "app_key": KEY_API}, headers=tenant.headers
    ).json()
    assert connection["account_id"] == "acct-key-1" and connection["auth_mode"] == "api_key"
    after = client.get(done.headers["location"])
    assert connection["id"] in after.text and key not in after.text


def test_a_non_secret_field_is_shown_again_and_a_secret_one_is_not(
    api: httpx.Client, tenant: Tenant, service: ServiceProcess
) -> None:
    client = browser(service)
    open_page(client, create_session(api, tenant, allowed_connectors=[BASIC_API])["connect_url"])
    path = f"/connect/credentials/{BASIC_API}"
    form = client.get(path)
    assert 'name="field_email" type="text"' in form.text
    assert 'name="field_api_token" type="password"' in form.text
    wrong = "wrong-api-token-0123456789"
    answer = submit(
        client,
        path,
        {"csrf_token": form_csrf(form.text), "field_email": EMAIL, "field_api_token": wrong},
    )
    assert answer.status_code == 400
    assert f'value="{EMAIL}"' in answer.text and wrong not in answer.text
    # A connector the session does not offer has no form.
    assert client.get(FORM).status_code == 403
