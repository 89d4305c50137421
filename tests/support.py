"""What the tests share: a registry server in a process of its own, free ports, and waits."""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.threads import deferToThread

REPO_ROOT = Path(__file__).resolve().parent.parent


def proc_status_kib(pid: int, key: str) -> int:
    """A process's `key` (VmRSS, VmHWM…) from /proc/PID/status, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ocireg_command(*args: str) -> list[str]:
    """The command that runs ocireg from this checkout, as `twistd -n ocireg` would."""
    return [sys.executable, "-m", "twisted", "--log-format", "text", "ocireg", *args]


def twistd_command(*args: str) -> list[str]:
    """The command that runs ocireg from this checkout as the systemd unit does: under twistd."""
    return [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "--nodaemon", "--pidfile=", "ocireg", *args,
    ]


def ocireg_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env


@attrs.define
class RegistryProcess:
    """An ocireg server process on a loopback port, with its own data directory."""

    data_dir: Path
    port: int = attrs.field(factory=free_port)
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    #: `ocireg_command` (python -m twisted) or `twistd_command`.
    command: Callable[..., list[str]] = ocireg_command
    #: Variables added to the process's environment.
    environment: dict[str, str] = attrs.field(factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self, *extra: str, timeout: float = 30.0) -> RegistryProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir.parent / f"ocireg-{self.port}.log"
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(
                "--listen", f"tcp:{self.port}:interface=127.0.0.1",
                "--data-dir", str(self.data_dir), *extra,
            ),
            cwd=self.data_dir.parent,
            env={**ocireg_environment(), **self.environment},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ocireg exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as response:
                    if response.status == 200:
                        return self
            except urllib.error.HTTPError as e:
                # With authentication on, an anonymous /v2/ is a 401: it answers.
                if e.code == 401:
                    return self
                time.sleep(0.02)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                # A refused connection costs little: look often, the start is on every test's path.
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"ocireg did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-20000:]

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


def wait_for(condition, what: str, timeout: float = 30.0, log=lambda: ""):
    """`condition()`'s first true value, polled until `timeout` s; else fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{log()}")


def in_thread(test: Callable) -> Callable:
    """Mark test `test`, whose body blocks (sockets, http.client), to run in a thread.

    pytest-twisted runs every test body in the reactor's greenlet: a body that
    blocks there stops the in-process `server` it talks to. In a thread, the
    reactor serves meanwhile, over real TCP, as a server process would; the
    body must touch nothing of the reactor's (use the server's port and files).
    """

    @functools.wraps(test)
    async def run(*args, **kwargs):
        return await deferToThread(test, *args, **kwargs)

    return pytest_twisted.ensureDeferred(run)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A key and a self-signed certificate for 127.0.0.1 and localhost, written into
    `directory`: (key file, certificate file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ocireg test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path
