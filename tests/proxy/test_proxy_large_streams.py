"""50 MB each way through the proxy while the service's memory grows by less than 50 MB: the
bodies stream, neither is held whole (SPEC §9). Neither the test nor the upstream holds them
either: both ends generate and hash them chunk by chunk."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Tenant
from tests.proxy.conftest import connect_to, proxied
from tests.support import web
from tests.support.oidc import free_port
from tests.support.service import ServiceProcess
from tests.support.upstream_api import UpstreamApi, pattern_chunks

MiB = 1024 * 1024
SIZE = 50 * MiB
# What the service may grow by while the transfer runs: less than either body.
GROWTH_BOUND = 50 * 1000 * 1000
SAMPLE_SECONDS = 0.05


def rss_bytes(pid: int) -> int:
    """The process's resident set (VmRSS, in kB in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class PeakRss:
    """The highest RSS of a process, sampled every ``SAMPLE_SECONDS`` in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_bytes(pid)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            self.samples += 1
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


@pytest.fixture
def roomy_process(service: ServiceProcess, tmp_path: Path) -> Iterator[ServiceProcess]:
    """A server of its own (its memory is this test's alone) on the same database, taking
    bodies larger than the test's."""
    env = {**service.env, "CONNECTORS_PROXY_MAX_BODY_BYTES": str(64 * MiB)}
    process = ServiceProcess(free_port(), env, tmp_path / "roomy.log").start()
    yield process
    process.stop()


def test_fifty_megabytes_each_way_leave_the_services_memory_flat(
    api: httpx.Client,
    tenant: Tenant,
    roomy_process: ServiceProcess,
    upstream: UpstreamApi,
) -> None:
    connection_id = connect_to(api, tenant)
    assert roomy_process.process is not None
    pid = roomy_process.process.pid
    upload_url = f"{roomy_process.api}/{connection_id}/proxy/upload"
    download_url = f"{roomy_process.api}/{connection_id}/proxy/download/{SIZE}"
    upstream.release()  # the download does not wait halfway
    with web.client(base_url=roomy_process.api, timeout=60) as roomy:
        # Everything a proxied call loads on first use, loaded before the baseline: a small
        # upload and download of the same kinds (streamed, over the replay size).
        warm = proxied(
            roomy, tenant, connection_id, "upload", "POST", content=pattern_chunks(2 * MiB)
        )
        assert warm.status_code == 200, warm.text
        assert len(proxied(roomy, tenant, connection_id, f"download/{2 * MiB}").content) == 2 * MiB
        baseline = rss_bytes(pid)

        sent = hashlib.sha256()

        def upload() -> Iterator[bytes]:
            for chunk in pattern_chunks(SIZE):
                sent.update(chunk)
                yield chunk

        with PeakRss(pid) as memory:
            uploaded = roomy.post(
                upload_url, params=tenant.org, headers=tenant.headers, content=upload()
            )
            received, length = hashlib.sha256(), 0
            with roomy.stream(
                "GET", download_url, params=tenant.org, headers=tenant.headers
            ) as downloaded:
                assert downloaded.status_code == 200
                assert downloaded.headers["x-connectors-proxy"] == "upstream"
                for chunk in downloaded.iter_raw():
                    received.update(chunk)
                    length += len(chunk)

    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json() == {"length": SIZE, "sha256": sent.hexdigest()}
    assert length == SIZE
    expected = hashlib.sha256()
    for chunk in pattern_chunks(SIZE):
        expected.update(chunk)
    assert received.hexdigest() == expected.hexdigest()
    assert memory.samples > 1  # sampled while the bodies went through
    growth = memory.peak - baseline
    assert growth < GROWTH_BOUND, f"the service grew by {growth / MiB:.1f} MiB"
