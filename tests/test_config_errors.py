"""A configuration the service cannot use stops start-up with the environment variable to fix,
as the operator wrote it, never the internal field name, and never the value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.service import TEST_ENCRYPTION_KEY


def test_a_bad_setting_names_its_environment_variable(tmp_path: Path) -> None:
    secretish = "postgresql://user:hunter2-password@db.example.test/app"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CONNECTORS_")},
        "CONNECTORS_DATA_DIR": str(tmp_path / "data"),
        "CONNECTORS_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY,
        "CONNECTORS_FLOW_TTL_SECONDS": "5",
        "CONNECTORS_BASE_URL": "ftp://connectors.example.test",
        "CONNECTORS_HOT_READ_POOL_SIZE": secretish,
    }
    result = subprocess.run(
        [sys.executable, "-m", "personal_connectors", "serve", "--port", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "CONNECTORS_FLOW_TTL_SECONDS" in output
    assert "CONNECTORS_BASE_URL" in output
    assert "CONNECTORS_HOT_READ_POOL_SIZE" in output
    assert "flow_ttl_seconds" not in output
    assert "hunter2" not in output
    assert "Traceback" not in output
