"""A `registry` fixture backed by Debian's reference registry (distribution
2.8, `apt-get install docker-registry`, binary /usr/bin/docker-registry).

Loaded by tests/e2e/conftest.py only when OCIREG_E2E_AGAINST_REFERENCE=1: it
then overrides the `registry` fixture of tests/conftest.py (the ocireg
server) for the e2e tests, to prove the client infrastructure independently
of ocireg, and to compare the two side by side.

Same contract as the ocireg fixture: function scope, a fresh registry with
empty storage for every test, `.host` ("127.0.0.1:PORT") and `.url`
("http://127.0.0.1:PORT").
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

BINARY = os.environ.get("OCIREG_E2E_REFERENCE_BINARY", "/usr/bin/docker-registry")

CONFIG = """\
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
"""


@dataclass
class ReferenceRegistry:
    host: str
    url: str
    root: Path
    log_path: Path
    proc: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_reference_registry(base: Path) -> ReferenceRegistry:
    """Start docker-registry on a free 127.0.0.1 port with empty filesystem
    storage under `base`; return once GET /v2/ answers 200.  Usable outside
    pytest (e.g. by a side-by-side benchmark); call .stop() when done."""
    if not shutil.which(BINARY):
        raise RuntimeError(f"{BINARY} not found: apt-get install -y docker-registry")
    base = Path(base)
    root = base / "storage"
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        port = _free_port()  # a race with other binders is possible: retry
        config = base / "config.yml"
        config.write_text(CONFIG.format(root=root, port=port))
        log_path = base / "registry.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [BINARY, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        reg = ReferenceRegistry(
            f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", root, log_path, proc
        )
        try:
            _wait_ready(reg.url, proc, log_path)
            return reg
        except RuntimeError:
            reg.stop()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url + "/v2/", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not answer within {timeout}s")


@pytest.fixture
def registry(tmp_path_factory):
    """A fresh reference registry, empty storage, for each test."""
    reg = start_reference_registry(tmp_path_factory.mktemp("reference-registry"))
    try:
        yield reg
    finally:
        reg.stop()
