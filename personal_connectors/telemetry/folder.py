"""The folder ``connectors serve`` keeps its workers' metric values in.

prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` once, when it is first imported, and then
writes every value to a memory-mapped file of its process in that folder; ``GET /metrics`` adds up
all the files. So ``serve`` sets the variable before anything imports the library, in the process
that starts the workers (they inherit its environment), to a folder of its own: created empty at
start (the files of an earlier run would be counted again) and removed when ``serve`` exits.
This module must not import prometheus-client.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def multiprocess_folder() -> Iterator[str]:
    """A private, empty folder (0700, in the system's temporary folder) named in the environment
    for the block's duration; any folder the environment named before is left alone."""
    folder = tempfile.mkdtemp(prefix="connectors-metrics-")
    previous = os.environ.get(MULTIPROCESS_ENV)
    os.environ[MULTIPROCESS_ENV] = folder
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop(MULTIPROCESS_ENV, None)
        else:
            os.environ[MULTIPROCESS_ENV] = previous
        shutil.rmtree(folder, ignore_errors=True)
