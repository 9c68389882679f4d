"""Loading the catalog: the built-in entries shipped as data, merged with an operator's file.

A bad entry stops loading with a message that names the file, the entry and the field.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import ValidationError

from personal_connectors.exceptions import ResourceNotFound, unknown_connector
from personal_connectors.providers.schema import ProviderEntry, providers_file_schema

# The built-in entries: one YAML file per group (``oauth.yaml``, ``api-keys-*.yaml``), read in
# name order; a key defined in two files is an error.
BUILTIN_CATALOG = Path(__file__).with_name("builtin")
# The committed JSON Schema of a providers file; a test keeps it equal to ``schema_document()``.
SCHEMA_FILE = Path(__file__).with_name("provider.schema.json")


class CatalogError(ValueError):
    """A providers file that cannot be used; the message says where and why."""


def _describe(error: ValidationError, source: str, key: str) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(entry)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: entry '{key}', field '{field}': {message}")
    return "\n".join(lines)


# libyaml's safe loader when PyYAML was built with it: the same documents, parsed several
# times faster (the built-in catalog is read at every start).
_SAFE_LOADER = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


def read_entries(path: Path) -> dict[str, dict[str, Any]]:
    """The raw mapping of a providers file: ``{key: {field: value}}``."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)  # noqa: S506
    except OSError as exc:
        raise CatalogError(f"{path}: cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: must be a mapping of provider key to entry")
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, dict):
            raise CatalogError(f"{path}: entry '{key}' must be a mapping of fields")
    return data


def read_builtin() -> Mapping[str, Mapping[str, Any]]:
    """The raw built-in entries of every file in ``builtin/``."""
    return _builtin(BUILTIN_CATALOG)[0]


@functools.cache
def _builtin(
    folder: Path,
) -> tuple[Mapping[str, Mapping[str, Any]], Mapping[str, ProviderEntry]]:
    """The built-in entries, raw and validated: package data, read once a process (``serve``
    checks the catalog before its app loads it again)."""
    entries: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")):
        for key, fields in read_entries(path).items():
            if key in entries:
                raise CatalogError(f"{path.name}: entry '{key}' is already in {origin[key]}")
            entries[key], origin[key] = fields, path.name
    return MappingProxyType(entries), MappingProxyType(
        validate_entries(entries, "built-in catalog")
    )


def validate_entries(
    raw: Mapping[str, Mapping[str, Any]],
    source: str,
    base: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, ProviderEntry]:
    """Validate every entry; an entry whose key is in ``base`` overrides those fields only."""
    entries: dict[str, ProviderEntry] = {}
    problems: list[str] = []
    for key, fields in raw.items():
        merged = {**(base or {}).get(key, {}), **fields, "key": key}
        try:
            entries[key] = ProviderEntry.model_validate(merged)
        except ValidationError as exc:
            problems.append(_describe(exc, source, key))
    if problems:
        raise CatalogError("\n".join(problems))
    return entries


@dataclass(frozen=True)
class Catalog:
    entries: Mapping[str, ProviderEntry]

    def get(self, key: str) -> ProviderEntry | None:
        return self.entries.get(key)

    def require(self, key: str) -> ProviderEntry:
        """The entry, or the 404 every ``{tool_key}`` path answers for an unknown one."""
        entry = self.entries.get(key)
        if entry is None:
            raise ResourceNotFound(unknown_connector(key, self.entries))
        return entry

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __iter__(self) -> Iterator[ProviderEntry]:
        return iter(sorted(self.entries.values(), key=lambda entry: entry.key))

    def __len__(self) -> int:
        return len(self.entries)


def load_catalog(providers_file: Path | None = None) -> Catalog:
    builtin_raw, builtin_entries = _builtin(BUILTIN_CATALOG)
    entries = dict(builtin_entries)
    if providers_file is not None:
        entries.update(
            validate_entries(read_entries(providers_file), str(providers_file), builtin_raw)
        )
    return Catalog(entries)


def check_file(path: Path) -> dict[str, ProviderEntry]:
    """What ``connectors providers check`` runs: the file on its own, merged over built-ins."""
    return validate_entries(read_entries(path), str(path), read_builtin())


def schema_document() -> str:
    """The text of ``provider.schema.json``: stable key order, so diffs show real changes."""
    return json.dumps(providers_file_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
