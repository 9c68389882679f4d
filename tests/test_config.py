"""Settings: the public URL follows the listening address unless set, and `serve` warns when
a public URL on this machine cannot reach the address it listens on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from personal_connectors.config import Settings, base_url_mismatch
from tests.support.oidc import free_port


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_without_a_base_url_the_public_url_is_the_listening_address() -> None:
    assert settings().base_url == "http://127.0.0.1:8080"
    assert (
        settings(port=9000).redirect_uri == "http://127.0.0.1:9000/v1/personal-connectors/callback"
    )
    assert settings(host="0.0.0.0", port=9000).base_url == "http://127.0.0.1:9000"
    assert settings(host="::1").base_url == "http://[::1]:8080"
    assert (
        settings(port=9000, base_url="https://connect.example").base_url
        == "https://connect.example"
    )


def test_the_cli_and_the_server_read_the_same_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CONNECTORS_PORT=9123\nCONNECTORS_PROVIDERS_FILE=p.yaml\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORS_")}
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from personal_connectors.config import Settings as S; "
            "s = S(); print(s.redirect_uri, s.providers_file)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert shown == ["http://127.0.0.1:9123/v1/personal-connectors/callback", "p.yaml"]


@pytest.mark.parametrize(
    ("base_url", "host", "port"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1", 8080),
        ("http://localhost:8080", "127.0.0.1", 8080),
        ("http://127.0.0.1:8080", "0.0.0.0", 8080),
        ("https://connect.example.com", "0.0.0.0", 8080),  # a proxy in front: not judged
        ("http://10.0.0.5:8080", "10.0.0.5", 8080),
    ],
)
def test_agreeing_addresses_give_no_warning(base_url: str, host: str, port: int) -> None:
    assert base_url_mismatch(settings(base_url=base_url), host, port) is None


@pytest.mark.parametrize(
    ("base_url", "host", "port"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1", 9000),
        ("http://localhost:8080", "0.0.0.0", 9000),
        ("http://127.0.0.1:8080", "10.0.0.5", 8080),  # loopback URL, server on another address
        ("http://10.0.0.5:8080", "10.0.0.5", 9000),
    ],
)
def test_disagreeing_addresses_are_named_with_the_variable_to_set(
    base_url: str, host: str, port: int
) -> None:
    message = base_url_mismatch(settings(base_url=base_url), host, port)
    assert message is not None
    assert "CONNECTORS_BASE_URL" in message and f":{port}" in message


def test_serve_on_another_port_warns_that_the_redirect_uri_points_elsewhere(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTORS_")}
    env["CONNECTORS_BASE_URL"] = "http://127.0.0.1:8080"
    process = subprocess.Popen(
        [sys.executable, "-m", "personal_connectors", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:  # the warning comes before the server starts
            seen.append(line)
            if "Personal Connectors on" in line:
                break
        output = "".join(seen)
        assert "warning:" in output and f"listens on 127.0.0.1:{port}" in output, output
        assert "http://127.0.0.1:8080/v1/personal-connectors/callback" in output
    finally:
        process.terminate()
        process.wait(30)


def test_a_base_url_a_browser_cannot_parse_is_refused_at_start() -> None:
    """Every origin check (launch, disconnect, return URLs) parses it: refused once, here."""
    for bad in ("http://exa mple.com", "http://[::1", "ftp://connect.example"):
        with pytest.raises(ValueError, match="base_url"):
            settings(base_url=bad)
