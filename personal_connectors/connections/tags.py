"""Tags and metadata a platform keeps on a connection (SPEC §8): their limits, the RFC 7396
merge patch that changes them, and the ``tag=key:value`` list filter.

``tags`` is a flat string→string map the list filters on; ``metadata`` any JSON object, only
stored and shown. Both are checked whole after a patch is applied, so every way in (the PATCH
route, an import line) refuses the same things with the same messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from personal_connectors.exceptions import ValidationFailed

MAX_TAGS = 20
MAX_TAG_KEY_LENGTH = 64
MAX_TAG_VALUE_LENGTH = 256
MAX_METADATA_BYTES = 16 * 1024
# Deeper objects are refused before the (recursive) merge walks them.
MAX_METADATA_DEPTH = 32
# Letters, digits and `_ . - /`: a key is matched inside a JSON path on SQLite, so it holds no
# quote, and it holds no `:`, which separates key from value in the `tag` filter.
TAG_KEY_PATTERN = re.compile(r"[A-Za-z0-9_./-]+")
TAG_KEY_RULE = "letters, digits and `_ . - /`"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: an object patch merges key by key (a null removes the key, an object merges
    recursively); any other patch replaces the target. Returns a new value; neither is changed."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def check_tag_key(key: str, field: str) -> None:
    if len(key) > MAX_TAG_KEY_LENGTH:
        raise ValidationFailed.for_fields(
            f"Tag keys are at most {MAX_TAG_KEY_LENGTH} characters; "
            f"'{key[:MAX_TAG_KEY_LENGTH]}…' is longer.",
            field,
        )
    if not TAG_KEY_PATTERN.fullmatch(key):
        raise ValidationFailed.for_fields(
            f"Tag keys are 1 to {MAX_TAG_KEY_LENGTH} of {TAG_KEY_RULE}; '{key}' is not.", field
        )


def check_tags(tags: Any, field: str = "tags") -> dict[str, str]:
    """A whole tag map (a connection's or an end user's), as it would be stored; 400 naming the
    limit it breaks."""
    if not isinstance(tags, dict):
        raise ValidationFailed.for_fields(
            "`tags` must be an object of string values (a null value removes a tag).", field
        )
    if len(tags) > MAX_TAGS:
        raise ValidationFailed.for_fields(
            f"There may be at most {MAX_TAGS} tags; this would leave {len(tags)} "
            "(in a patch, a null value removes one).",
            field,
        )
    for key, value in tags.items():
        check_tag_key(key, field)
        if not isinstance(value, str):
            raise ValidationFailed.for_fields(
                f"Tag values are strings; the value of '{key}' is not "
                "(a null value removes the tag).",
                field,
            )
        if len(value) > MAX_TAG_VALUE_LENGTH:
            raise ValidationFailed.for_fields(
                f"Tag values are at most {MAX_TAG_VALUE_LENGTH} characters; "
                f"the value of '{key}' has {len(value)}.",
                field,
            )
    return dict(tags)


def metadata_size(metadata: Mapping[str, Any]) -> int:
    """Bytes of the compact UTF-8 JSON encoding, the size the limit counts."""
    return len(
        json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    )


def check_metadata(metadata: Any, field: str = "metadata") -> dict[str, Any]:
    """A connection's whole metadata, as it would be stored; 400 naming the limit it breaks."""
    if not isinstance(metadata, dict):
        raise ValidationFailed.for_fields("`metadata` must be a JSON object.", field)
    check_depth(metadata, field)
    try:
        size = metadata_size(metadata)
    except ValueError:  # NaN or an infinity (a number like 1e999): not JSON
        raise ValidationFailed.for_fields(
            "`metadata` numbers must be finite (1e999 is not).", field
        ) from None
    if size > MAX_METADATA_BYTES:
        raise ValidationFailed.for_fields(
            f"`metadata` is at most {MAX_METADATA_BYTES} bytes as compact JSON "
            f"({MAX_METADATA_BYTES // 1024} KiB); this change would make it {size}.",
            field,
        )
    return dict(metadata)


def check_depth(value: Any, field: str) -> None:
    """At most ``MAX_METADATA_DEPTH`` nested objects and arrays (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if not isinstance(item, (dict, list)):
            continue
        if depth > MAX_METADATA_DEPTH:
            raise ValidationFailed.for_fields(
                f"`{field}` nests at most {MAX_METADATA_DEPTH} objects or arrays deep.", field
            )
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children)


def parse_tag_filters(values: Sequence[str], field: str = "tag") -> list[tuple[str, str]]:
    """``key:value`` query values (split at the first `:`) as (key, value) pairs."""
    if len(values) > MAX_TAGS:
        raise ValidationFailed.for_fields(
            f"At most {MAX_TAGS} `tag` filters (a connection holds no more tags than that).",
            field,
        )
    pairs: list[tuple[str, str]] = []
    for value in values:
        key, separator, wanted = value.partition(":")
        if not separator:
            raise ValidationFailed.for_fields(
                "`tag` filters are `key:value` (e.g. `tag=team:sales`); "
                f"'{value[:80]}' has no `:`.",
                field,
            )
        check_tag_key(key, field)
        pairs.append((key, wanted))
    return pairs
