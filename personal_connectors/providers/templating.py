"""Filling ``{variable}`` placeholders in provider URLs from validated per-connection values.

Values are checked against the entry's declared patterns *before* any URL is built, so a
``subdomain`` of ``evil.com/`` never becomes part of a request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from personal_connectors.exceptions import ValidationFailed
from personal_connectors.providers.schema import TEMPLATE_VARIABLE, ProviderEntry


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
        value = values.get(name)
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


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace every ``{name}``; a name without a value is a programming error, not user input."""

    def substitute(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return TEMPLATE_VARIABLE.sub(substitute, template)
