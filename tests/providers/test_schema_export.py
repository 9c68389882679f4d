"""The committed JSON Schema of a providers file equals the one the code generates."""

from __future__ import annotations

import json
import subprocess
import sys

from personal_connectors.providers.catalog import SCHEMA_FILE, schema_document
from personal_connectors.providers.schema import URL_FIELDS, ProviderEntry


def test_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_document(), (
        "provider.schema.json is stale: run "
        "`connectors providers schema > personal_connectors/providers/provider.schema.json`"
    )


def test_the_cli_prints_the_same_document() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "personal_connectors", "providers", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == SCHEMA_FILE.read_text(encoding="utf-8")


def test_schema_describes_a_file_of_entries() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["type"] == "object"
    assert schema["additionalProperties"] == {"$ref": "#/$defs/ProviderEntry"}
    entry = schema["$defs"]["ProviderEntry"]
    assert entry["additionalProperties"] is False  # unknown fields are refused
    assert "key" not in entry["properties"]  # the mapping key, not a field
    fields = set(ProviderEntry.model_fields) - {"key"}
    assert set(entry["properties"]) == fields
    assert set(URL_FIELDS) <= fields
    for name in ("refresh_url", "token_metadata", "callback_metadata", "scope_param"):
        assert name in entry["properties"], name
    assert "default" in schema["$defs"]["IntegrationParam"]["properties"]
    assert "headers" in schema["$defs"]["RevocationCall"]["properties"]
