"""Filling ``{variable}`` placeholders in provider URLs from validated per-connection values.

Values are checked against the entry's declared patterns *before* any URL is built, so a
``subdomain`` of ``evil.com/`` never becomes part of a request. Who may give a value is the
entry's ``set_by`` (``ProviderEntry.admin_params``): a member's ``POST /authorize`` gives only
member params; admin params come from the organization's OAuth app or the operator's default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from personal_connectors.exceptions import ConnectorNotConfigured, ValidationFailed
from personal_connectors.providers.schema import (
    BUILTIN_VARIABLES,
    TEMPLATE_VARIABLE,
    ProviderEntry,
)


def validate_integration_params(
    entry: ProviderEntry, given: Mapping[str, object] | None
) -> dict[str, str]:
    values = dict(given or {})
    unknown = sorted(set(values) - set(entry.integration_params))
    if unknown:
        raise ValidationFailed.for_fields(
            f"Unknown integration_params for {entry.key}: {', '.join(unknown)}.",
            *(f"integration_params.{name}" for name in unknown),
        )
    clean: dict[str, str] = {}
    for name, spec in entry.integration_params.items():
        value = values.get(name, spec.default)
        if value is None:
            if spec.required:
                raise ValidationFailed.for_fields(
                    f"integration_params.{name} is required for {entry.key}.",
                    f"integration_params.{name}",
                )
            continue
        if not isinstance(value, str) or not re.fullmatch(spec.pattern, value):
            raise ValidationFailed.for_fields(
                f"integration_params.{name} does not match the pattern {spec.pattern}.",
                f"integration_params.{name}",
            )
        clean[name] = value
    return clean


def _set_on_app(entry: ProviderEntry, name: str) -> str:
    return (
        f"integration_params.{name} of {entry.key} is set by an owner or admin on the "
        f"organization's app: PUT /apps/{entry.key} with integration_params "
        f"(or `connectors apps set {entry.key} --param {name}=VALUE`)"
    )


def connection_params(
    entry: ProviderEntry, given: Mapping[str, object] | None, app_params: Mapping[str, str] | None
) -> dict[str, str]:
    """The values of a new connection: the caller's member params and the app's admin params.

    A caller naming an admin param is refused, whatever its value (it would choose where the
    organization's client secret is sent); an admin param with no value on the app and no
    operator default makes the connector not configured.
    """
    chosen = sorted(set(given or {}) & entry.admin_params)
    if chosen:
        raise ValidationFailed.for_fields(
            f"{_set_on_app(entry, chosen[0])}; it cannot be chosen in POST /authorize.",
            *(f"integration_params.{name}" for name in chosen),
        )
    for name in sorted(entry.admin_params):
        spec = entry.integration_params[name]
        if spec.required and spec.default is None and not (app_params or {}).get(name):
            raise ConnectorNotConfigured(
                entry.key, f"Not configured yet: {_set_on_app(entry, name)}."
            )
    admin_values = {k: v for k, v in (app_params or {}).items() if k in entry.admin_params}
    return validate_integration_params(entry, {**dict(given or {}), **admin_values})


def app_params(entry: ProviderEntry, given: Mapping[str, object] | None) -> dict[str, str]:
    """Validate the admin params an owner or admin sets on an app (``PUT /apps/{app_key}``)."""
    values = dict(given or {})
    member = sorted(set(values) & (set(entry.integration_params) - entry.admin_params))
    if member:
        raise ValidationFailed.for_fields(
            f"integration_params.{member[0]} of {entry.key} is chosen for each connection, in "
            "POST /authorize, not on the app.",
            *(f"integration_params.{name}" for name in member),
        )
    unknown = sorted(set(values) - entry.admin_params)
    if unknown:
        raise ValidationFailed.for_fields(
            f"Unknown integration_params for {entry.key}: {', '.join(unknown)}.",
            *(f"integration_params.{name}" for name in unknown),
        )
    clean: dict[str, str] = {}
    for name, value in values.items():
        pattern = entry.integration_params[name].pattern
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise ValidationFailed.for_fields(
                f"integration_params.{name} does not match the pattern {pattern}.",
                f"integration_params.{name}",
            )
        clean[name] = value
    return clean


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace every ``{name}``; a name without a value is a programming error, not user input.

    Service values (``{access_token}``, ``{client_id}``, …) without a value are left in place:
    endpoints are resolved before any token exists, and the identity call fills the token later
    (HubSpot's ``access-tokens/{access_token}``).
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values and name in BUILTIN_VARIABLES:
            return match.group(0)
        return values[name]

    return TEMPLATE_VARIABLE.sub(substitute, template)


def token_headers(
    declared: Mapping[str, str], access_token: str, *, bearer: bool = True
) -> dict[str, str]:
    """Headers of a call made with a connection's token (identity call, check call).

    The declared headers with ``{access_token}`` filled, plus ``Authorization: Bearer`` unless
    a declared header already carries the token (Shopify's ``X-Shopify-Access-Token``) or the
    caller says the token goes elsewhere (``bearer=False``: an introspection body).
    """
    values = {"access_token": access_token}
    headers = {"Accept": "application/json"}
    headers.update({name: fill(value, values) for name, value in declared.items()})
    if bearer and not any("{access_token}" in value for value in declared.values()):
        headers["Authorization"] = f"Bearer {access_token}"
    return headers
