"""What ``connectors serve`` runs in each worker: the app, with the garbage collector settled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# `connectors serve` turns the collector off while the process starts; the app's lifespan
# must turn it back on, or a long-running server would never collect a reference cycle.
PROGRAM = """
import asyncio, gc
gc.disable()
from personal_connectors.cli.context import prepare_database
from personal_connectors.cli.serving import create_served_app
from personal_connectors.config import load_settings

prepare_database(load_settings())
app = create_served_app()

async def main():
    async with app.router.lifespan_context(app):
        print(gc.isenabled(), gc.get_threshold(), gc.get_freeze_count() > 0)

asyncio.run(main())
"""


def test_the_served_app_turns_the_collector_back_on_once_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CONNECTORS_"))}
    env["CONNECTORS_DATA_DIR"] = str(tmp_path)
    ran = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    # On, with start-up's objects frozen out of full passes and young passes made rarer.
    assert ran.stdout.strip() == "True (10000, 20, 20) True"
