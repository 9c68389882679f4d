"""nginx (Debian's package) in front of service instances, with the deployment's own config.

``deploy/nginx/personal-connectors.conf`` is used as shipped but for the parts its markers
delimit, which a deployment edits too: the instances (``# BEGIN instances``) become the test's,
the TLS listener (``# BEGIN tls``) a plain loopback one, and the port-80 redirect goes. nginx
runs unprivileged-style, as a foreground process of the test with every path in a temp folder.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.support import web

DEPLOY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "personal-connectors.conf"
START_TIMEOUT_S = 15.0


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        raise RuntimeError("nginx is not installed (apt-get install -y nginx)")
    return found


def _replace_block(text: str, name: str, replacement: str) -> str:
    pattern = re.compile(rf"^[ \t]*# BEGIN {name}\n.*?^[ \t]*# END {name}\n", re.M | re.S)
    found = pattern.findall(text)
    assert len(found) == 1, f"deploy/nginx config: one '# BEGIN {name}' block expected"
    return pattern.sub(lambda _: replacement, text)


def templated_site(instance_ports: list[int], port: int, logs: Path) -> str:
    """The deployment's site config, pointed at these instances and listening on ``port``."""
    text = DEPLOY_CONF.read_text()
    servers = "".join(
        f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n" for p in instance_ports
    )
    text = _replace_block(text, "instances", servers)
    text = _replace_block(text, "tls", f"    listen 127.0.0.1:{port};\n")
    text = _replace_block(text, "redirect", "")
    text = text.replace("/var/log/nginx/", f"{logs}/")
    return text.replace("server_name connect.example.com;", "server_name 127.0.0.1;")


class Nginx:
    def __init__(self, workdir: Path, instance_ports: list[int], port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "site.conf").write_text(templated_site(instance_ports, port, workdir))
        # As root, nginx's workers switch to `user`; keep them the test's own user so they can
        # use the temp folder.
        user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
        (workdir / "nginx.conf").write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {workdir}/nginx.pid;\n"
            f"error_log {workdir}/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"  access_log {workdir}/access.log;\n"
            f"  client_body_temp_path {workdir}/body;\n  proxy_temp_path {workdir}/proxy;\n"
            f"  fastcgi_temp_path {workdir}/fastcgi;\n  uwsgi_temp_path {workdir}/uwsgi;\n"
            f"  scgi_temp_path {workdir}/scgi;\n"
            f"  include {workdir}/site.conf;\n"
            "}\n"
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, *args: str) -> list[str]:
        return [
            nginx_binary(),
            "-p",
            str(self.workdir),
            "-c",
            str(self.workdir / "nginx.conf"),
            *args,
        ]

    def check(self) -> None:
        result = subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"nginx -t refused the config:\n{result.stderr}")

    def start(self) -> Nginx:
        self.check()
        log = (self.workdir / "stderr.log").open("ab")
        # Not watched for secrets: nginx's error log names the request line of a request an
        # instance failed to answer, the callback's code included (docs/deploy.md says so).
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.workdir / 'stderr.log').read_text()}")
            try:
                web.get(f"{self.base_url}/livez", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("nginx did not start listening")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
