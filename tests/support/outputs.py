"""The session's record of what must stay secret and of where processes wrote, for one scan when
the session ends (the ``no_secret_in_any_output`` fixture in tests/conftest.py; with xdist, per
worker).

Secrets come from where they are issued: each OpenID provider the tests start writes every code,
PKCE verifier, access, refresh and ID token it hands out or is shown into a file
(``issued_file``); client secrets and API keys are added as they are made. Outputs are the log
files of the servers (``watch``) and the captured output of every CLI and refresher run
(``run`` or ``record``). An output may carry the secrets it issued (``api-keys create`` prints
its key, ``webhooks add`` its signing secret): those are allowed there and nowhere else.
Besides the recorded values, API keys and webhook secrets are found by their shape, so a key
made through the API that no test wrote down is still caught.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A value shorter than this is no token: it would match ordinary words.
MIN_SECRET_LENGTH = 16
# What a token, code, key or JWT is made of; candidates are cut from outputs with it.
_TOKENISH = re.compile(r"[A-Za-z0-9_\-.~+/=]{16,}")
# Secrets recognisable by their shape alone (SPEC §1: ak_ + 40 characters; whsec_ signing secrets).
_SHAPED = {
    "api_key": re.compile(r"(?<![\w-])ak_[\w-]{40}(?![\w-])"),
    "webhook_secret": re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]{16,}"),
}


@dataclass
class SessionRecord:
    secrets: dict[str, str] = field(default_factory=dict)  # value -> kind
    issued_files: list[Path] = field(default_factory=list)
    watched: dict[Path, str] = field(default_factory=dict)  # log file -> label
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (label, text)
    allowed: dict[str, set[str]] = field(default_factory=dict)  # secret -> labels issuing it

    def add_secret(self, value: str | None, kind: str) -> None:
        if value and len(value) >= MIN_SECRET_LENGTH:
            self.secrets.setdefault(value, kind)

    def issued_file(self, path: Path) -> None:
        self.issued_files.append(path)

    def watch(self, path: Path, label: str) -> None:
        self.watched.setdefault(path, label)

    def record(self, label: str, *texts: str | None, issues: Iterable[str] = ()) -> None:
        """A process's captured output; ``issues``: secrets it hands out by design."""
        label = f"{label} (output {len(self.outputs) + 1})"
        text = "\n".join(part for part in texts if part)
        self.outputs.append((label, text))
        for value in issues:
            self.allowed.setdefault(value, set()).add(label)

    def all_secrets(self) -> dict[str, str]:
        found = dict(self.secrets)
        for path in self.issued_files:
            if not path.exists():
                continue
            for line in path.read_text().splitlines():
                for kind, value in json.loads(line):
                    if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                        found.setdefault(value, kind)
        return found

    def _texts(self) -> list[tuple[str, str]]:
        files = [
            (label, path.read_text(errors="replace"))
            for path, label in self.watched.items()
            if path.exists()
        ]
        return files + self.outputs

    def leaks(self) -> list[str]:
        """Where a secret shows up outside the output that issued it: "kind in label" lines,
        never the value itself (the report must not become the leak)."""
        secrets = self.all_secrets()
        found: list[str] = []
        for label, text in self._texts():
            candidates = set()
            for match in _TOKENISH.findall(text):
                # A secret may sit after "name=" or end a sentence; a JWT's parts count too.
                for piece in (match, *match.split("=")):
                    candidates.update((piece, piece.strip("./"), *piece.split(".")))
            for value in candidates & secrets.keys():
                if label not in self.allowed.get(value, set()):
                    found.append(f"{secrets[value]} in {label}")
            for kind, pattern in _SHAPED.items():
                for value in set(pattern.findall(text)):
                    if label not in self.allowed.get(value, set()):
                        found.append(f"{kind} (by its shape) in {label}")
        return sorted(set(found))


RECORD = SessionRecord()


# The CLI commands that hand out a secret (shown once): only they may print one.
ISSUING_COMMANDS = ("connectors api-keys create", "connectors webhooks add")


def issued_by_cli(label: str, stdout: str) -> list[str]:
    """The keys and signing secrets a CLI run printed as its answer, if it is one that issues
    them; any other command printing one is a leak."""
    if not label.startswith(ISSUING_COMMANDS):
        return []
    return [value for pattern in _SHAPED.values() for value in pattern.findall(stdout)]


def run(
    command: Sequence[str],
    label: str,
    *,
    check: bool = False,
    record: SessionRecord = RECORD,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` with its output captured as text and recorded under ``label`` (before
    ``check`` raises, so a failed run's output is scanned too)."""
    result: subprocess.CompletedProcess[str] = subprocess.run(
        command, capture_output=True, text=True, **kwargs
    )
    record.record(label, result.stdout, result.stderr, issues=issued_by_cli(label, result.stdout))
    if check:
        result.check_returncode()
    return result
