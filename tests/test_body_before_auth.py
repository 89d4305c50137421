"""With authentication on, a body is read only once its sender may send it.

A manifest PUT (or a management API body) is refused with 401/403 as soon as
its headers are in, before a byte of its body is kept; a crowd of anonymous
senders of large bodies leaves the server's memory where it was.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import pytest
import pytest_twisted

from ocireg.config import Config
from tests.api_helpers import make_image
from tests.auth_helpers import GROUPS, RULES, basic, write_htpasswd
from tests.conftest import InProcessServer, start_in_process
from tests.support import RegistryProcess, in_thread, proc_status_kib

MIB = 1024 * 1024
#: A body as large as a manifest may be.
LARGE = 4 * MIB


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def auth_config(tmp_path, users: str = "") -> str:
    """A config file turning authentication on with the test users and rules, and `users`
    (htpasswd lines)."""
    htpasswd = write_htpasswd(tmp_path / "htpasswd")
    htpasswd.write_text(htpasswd.read_text() + users)
    lines = [f"auth_htpasswd = {json.dumps(str(htpasswd))}"]
    lines.append("[auth_groups]")
    lines += [f"{group} = {_toml_list(users)}" for group, users in GROUPS.items()]
    for rule in RULES:
        lines.append("[[auth_rules]]")
        for key, value in rule.items():
            lines.append(f"{key} = {_toml_list(value) if isinstance(value, list) else 'true'}")
    path = tmp_path / "ocireg.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


async def _auth_server(tmp_path, database: str = ""):
    """ocireg in the test's reactor on `auth_config`'s settings, stopped after the test."""
    started = await start_in_process(Config.load(
        auth_config(tmp_path), listen=("tcp:0:interface=127.0.0.1",),
        data_dir=str(tmp_path / "data"), database=database,
    ))
    try:
        yield started
    finally:
        await started.service.stopService()


@pytest_twisted.async_yield_fixture
async def auth_server(tmp_path):
    async for started in _auth_server(tmp_path):
        yield started


@pytest.fixture
def auth_process(tmp_path):
    """The same, in a process of its own: for what only a process shows (its memory)."""
    server = RegistryProcess(tmp_path / "data").start("--config", auth_config(tmp_path))
    try:
        yield server
    finally:
        server.stop()


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response from `sock`: status, headers (lower-case names), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _put_headers(server: RegistryProcess | InProcessServer, path: str, length: int,
                 authorization: str | None = None) -> bytes:
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return (
        f"PUT {path} HTTP/1.1\r\nHost: {server.host}\r\n{auth}"
        f"Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _error_code(body: bytes) -> str:
    return json.loads(body)["errors"][0]["code"]


@pytest.mark.parametrize("who, status, code", [
    (None, 401, "UNAUTHORIZED"),
    # bob may pull team/**, not push.
    (basic("bob", "bob-pw"), 403, "DENIED"),
])
@in_thread
def test_a_manifest_put_not_allowed_is_answered_before_its_body_is_sent(
    auth_server, who, status, code
):
    with socket.create_connection(("127.0.0.1", auth_server.port), timeout=10) as sock:
        # Only the headers: the server must answer without waiting for the 4 MiB.
        sock.sendall(_put_headers(auth_server, "/v2/team/app/manifests/v1", LARGE, who))
        got, headers, body = _read_response(sock)
    assert got == status, body
    assert _error_code(body) == code
    assert headers["content-type"] == "application/json"
    if status == 401:
        assert headers["www-authenticate"].startswith("Bearer realm=")
        assert 'scope="repository:team/app:pull,push"' in headers["www-authenticate"]


@in_thread
def test_a_management_body_from_a_non_admin_is_answered_before_it_is_sent(auth_server):
    with socket.create_connection(("127.0.0.1", auth_server.port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/v1/repositories/ HTTP/1.1\r\nHost: {auth_server.host}\r\n"
            f"Authorization: {basic('alice', 'alice-pw')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {LARGE}\r\n\r\n".encode()
        )
        status, _, body = _read_response(sock)
    assert status == 403, body
    assert json.loads(body)["error"]["code"] == "DENIED"


@in_thread
def test_a_refused_client_that_sends_its_body_anyway_reads_the_answer(auth_server):
    """The body is read and discarded, so the answer is not lost to a reset connection."""
    with socket.create_connection(("127.0.0.1", auth_server.port), timeout=10) as sock:
        sock.sendall(_put_headers(auth_server, "/v2/team/app/manifests/v1", LARGE)
                     + b"{" * LARGE)
        status, _, body = _read_response(sock)
    assert status == 401, body


def _request(server: RegistryProcess | InProcessServer, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


@pytest_twisted.async_yield_fixture
async def auth_server_on_each_backend(tmp_path, database):
    async for started in _auth_server(tmp_path, database):
        yield started


@in_thread
def test_an_allowed_manifest_put_still_works(auth_server_on_each_backend):
    auth_server = auth_server_on_each_backend
    alice = {"Authorization": basic("alice", "alice-pw")}
    image = make_image(layers=1)
    for digest, data in image.blobs.items():
        status, _, body = _request(
            auth_server, "POST", f"/v2/team/app/blobs/uploads/?digest={digest}", data,
            {**alice, "Content-Type": "application/octet-stream"},
        )
        assert status == 201, body
    status, response, body = _request(
        auth_server, "PUT", "/v2/team/app/manifests/v1", image.body,
        {**alice, "Content-Type": image.media_type},
    )
    assert status == 201, body
    assert response.getheader("Docker-Content-Digest") == image.digest
    status, _, body = _request(auth_server, "GET", "/v2/team/app/manifests/v1",
                               headers={**alice, "Accept": image.media_type})
    assert status == 200 and body == image.body


def _anonymous_put(server: RegistryProcess, i: int) -> int:
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(_put_headers(server, f"/v2/team/app{i}/manifests/v1", LARGE)
                     + b"{" * LARGE)
        status, _, _ = _read_response(sock)
        return status


def test_a_hundred_anonymous_large_manifest_puts_leave_memory_where_it_was(auth_process):
    pid = auth_process.process.pid
    # Warm up: what every refusal needs is allocated once.
    assert _anonymous_put(auth_process, -1) == 401
    before = proc_status_kib(pid, "VmRSS") * 1024
    peak = before
    with ThreadPoolExecutor(100) as pool:
        answers = pool.map(lambda i: _anonymous_put(auth_process, i), range(100), timeout=120)
        statuses = list(answers)
        peak = max(peak, proc_status_kib(pid, "VmHWM") * 1024)
    assert statuses == [401] * 100
    time.sleep(0.5)
    after = proc_status_kib(pid, "VmRSS") * 1024
    # Unfixed, the bodies were kept: +400 MiB at the peak, +300 MiB for good.
    assert peak - before < 48 * MIB, f"peak {(peak - before) / MIB:.0f} MiB over {before / MIB:.0f}"
    assert after - before < 16 * MIB, f"kept {(after - before) / MIB:.0f} MiB"
    _, _, metrics = _request(auth_process, "GET", "/metrics",
                             headers={"Authorization": basic("root", "root-pw")})
    assert b"\nocireg_requests_refused_before_body_total 101.0\n" in metrics


@in_thread
def test_a_token_request_body_past_64_kib_is_refused_before_it_is_sent(auth_server):
    with socket.create_connection(("127.0.0.1", auth_server.port), timeout=10) as sock:
        sock.sendall(
            f"POST /token HTTP/1.1\r\nHost: {auth_server.host}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {LARGE}\r\n\r\n".encode()
        )
        status, _, body = _read_response(sock)
    assert status == 413, body


def test_uploads_waiting_for_a_slow_login_keep_little_of_their_bodies(tmp_path):
    """While a bcrypt check runs, an upload body is not read ahead into memory."""
    # bcrypt cost 12: each check takes a noticeable time, and they queue.
    slow = f"slow:{bcrypt.hashpw(b'slow-pw', bcrypt.gensalt(12)).decode()}\n"
    server = RegistryProcess(tmp_path / "data").start("--config", auth_config(tmp_path, slow))
    try:
        pid = server.process.pid
        body = b"x" * (8 * MIB)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()

        def upload(i: int, who: str = "slow") -> int:
            status, _, answer = _request(
                server, "POST", f"/v2/{who}/app{i}/blobs/uploads/?digest={digest}", body,
                {"Authorization": basic(who, f"{who}-pw"),
                 "Content-Type": "application/octet-stream"},
            )
            return status

        # Warm up as another user: a login that succeeded is remembered, and
        # slow's must each wait for bcrypt.
        assert upload(-1, "alice") == 201
        before = proc_status_kib(pid, "VmRSS") * 1024
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(upload, range(8), timeout=120))
        peak = proc_status_kib(pid, "VmHWM") * 1024
    finally:
        server.stop()
    assert statuses == [201] * 8
    # Unfixed, each waiting upload read up to 8 MiB ahead: +64 MiB.
    assert peak - before < 40 * MIB, f"peak {(peak - before) / MIB:.0f} MiB over the baseline"
