"""The README's "Python client" example runs as written: taken from README.md, run as its own
process with a service key (as ``SVC``) against the running service, while the person opens
the link it prints in a browser and consents at the real provider."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from personal_connectors.client import Connectors
from tests.conftest import Tenant
from tests.connect_page.conftest import browser, launch
from tests.support import outputs
from tests.support.oidc import login_and_consent
from tests.support.platform import make_organization_key
from tests.support.service import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 120.0


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python client", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    return block


def test_the_readme_example_connects_and_gets_a_cached_token(
    service: ServiceProcess, tenant: Tenant, tmp_path: Path
) -> None:
    platform = make_organization_key(service, tenant.organization_id)
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    env = {**os.environ, "SVC": platform.api_key, "CONNECTORS_BASE_URL": service.base_url}
    run = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert run.stdout is not None
        first = run.stdout.readline()
        assert first.startswith("Open this link and consent: "), first
        link = first.split(": ", 1)[1].strip()

        person = browser(service)  # the person opens the launch link and consents
        to_provider = launch(person, link)
        assert to_provider.is_redirect, to_provider.text
        back = login_and_consent(to_provider.headers["location"], login="readme-user")
        assert person.get(back, headers={"Accept": "application/json"}).status_code == 200

        rest, _ = run.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    output = first + rest
    outputs.RECORD.record("README client example", output)
    assert run.returncode == 0, output
    assert re.search(r"^Connected: readme-user \[.*'openid'.*\]$", output, re.M), output
    assert "same one again: True" in output
    found = re.search(r"^409 INSUFFICIENT_SCOPE \['admin'\] req_[0-9a-f]{32}$", output, re.M)
    assert found, output
    # The connection belongs to the end user the example names.
    with Connectors(service.base_url, platform.api_key) as backend:
        [made] = backend.connections()
    assert (made.end_user_id, made.account_id) == ("user-7", "readme-user")
