"""The folder ``connectors serve`` keeps its workers' metric values in.

prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` once, when it is first imported, and then
writes every value to a memory-mapped file of its process in that folder; ``GET /metrics`` adds up
all the files. So ``serve`` sets the variable before anything imports the library, in the process
that starts the workers (they inherit its environment), to a folder of its own: created empty at
start (the files of an earlier run would be counted again) and removed when ``serve`` exits.
The folder of a ``serve`` that could not clean up (killed with SIGKILL) is removed by the next
one, which finds its process gone. This module must not import prometheus-client.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "connectors-metrics-"
OWNER_FILE = "serve.pid"  # the id of the `serve` process a folder belongs to


@contextmanager
def multiprocess_folder() -> Iterator[str]:
    """A private, empty folder (0700, in the system's temporary folder) named in the environment
    for the block's duration; any folder the environment named before is left alone."""
    _remove_abandoned()
    folder = tempfile.mkdtemp(prefix=PREFIX)
    Path(folder, OWNER_FILE).write_text(str(os.getpid()))
    previous = os.environ.get(MULTIPROCESS_ENV)
    os.environ[MULTIPROCESS_ENV] = folder
    # uvicorn stops on SIGTERM and then raises it again with the handler it found: this one
    # leaves through the block's end, which removes the folder, and SIGTERM is raised once
    # more with the handler from before, so the process ends as a SIGTERM ends it.
    terminating = signal.signal(signal.SIGTERM, _exit_on_signal)
    terminated = False
    try:
        yield folder
    except _Terminated:
        terminated = True
    finally:
        signal.signal(signal.SIGTERM, terminating)
        if previous is None:
            os.environ.pop(MULTIPROCESS_ENV, None)
        else:
            os.environ[MULTIPROCESS_ENV] = previous
        shutil.rmtree(folder, ignore_errors=True)
    if terminated:
        signal.raise_signal(signal.SIGTERM)


class _Terminated(BaseException):
    """SIGTERM arrived (raised out of the running code, as KeyboardInterrupt is for SIGINT)."""


def _exit_on_signal(_signum: int, _frame: object) -> None:
    raise _Terminated()


def _remove_abandoned() -> None:
    """Remove the folders of earlier ``serve`` processes of this user that are gone."""
    for owner in Path(tempfile.gettempdir()).glob(f"{PREFIX}*/{OWNER_FILE}"):
        try:
            pid = int(owner.read_text())
            if owner.stat().st_uid != os.getuid() or process_alive(pid):
                continue
        except (OSError, ValueError):
            continue
        shutil.rmtree(owner.parent, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process of that id exists (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
