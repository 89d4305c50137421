"""Connections past the limits are refused, a request's headers have a deadline, and a
client's kept bodies an allowance.

The clients are raw sockets in the test's thread (in_thread), against
in-process servers on loopback ports; but the allowance's, against a process:
whether the first body is read whole before the second arrives is a race that
a server sharing the test's interpreter (and its lock) loses now and then.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from contextlib import ExitStack

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ocireg.config import Config
from tests.conftest import InProcessServer, start_from_thread
from tests.support import RegistryProcess, in_thread, wait_for


def _config_file(tmp_path, settings: dict) -> str:
    path = tmp_path / "ocireg.toml"
    path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
    return str(path)


def _start(tmp_path, servers: list[InProcessServer], **settings) -> InProcessServer:
    """ocireg on a config file of `settings`, in the reactor: called from the test's thread."""
    return start_from_thread(servers, Config.load(
        _config_file(tmp_path, settings), listen=("tcp:0:interface=127.0.0.1",),
        data_dir=str(tmp_path / "data"),
    ))


@pytest.fixture
def processes():
    started: list[RegistryProcess] = []
    yield started
    for server in started:
        server.stop()


def _connect(server: InProcessServer | RegistryProcess, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                    source_address=(source, 0))
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _get(sock: socket.socket, server: InProcessServer, path: str = "/healthz") -> bytes:
    """One keep-alive request on `sock`; the response's head and body."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _metric(server: InProcessServer, name: str) -> float:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return next(sample.value for family in text_string_to_metric_families(text)
                for sample in family.samples if sample.name == name)


def _assert_busy(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer[:200]
    assert b"\r\nRetry-After: 1" in head
    assert json.loads(body)["errors"][0]["code"] == "TOOMANYREQUESTS"


@in_thread
def test_a_client_past_its_connection_limit_is_refused_with_503_others_are_not(
    tmp_path, servers
):
    server = _start(tmp_path, servers, max_client_connections=3)
    with ExitStack() as stack:
        held = [stack.enter_context(_connect(server)) for _ in range(3)]
        for sock in held:
            assert b" 200 " in _get(sock, server).split(b"\r\n")[0]
        with _connect(server) as fourth:
            _assert_busy(_read_all(fourth))
        # Another address has its own allowance.
        with _connect(server, "127.0.0.2") as other:
            assert b" 200 " in _get(other, server).split(b"\r\n")[0]
        held[0].close()

        def served() -> bool:
            with _connect(server) as again:
                again.sendall(f"GET /healthz HTTP/1.1\r\nHost: {server.host}\r\n"
                              "Connection: close\r\n\r\n".encode())
                return b" 200 " in _read_all(again).split(b"\r\n")[0]

        wait_for(served, "a connection to be served once one closed", 10)
    assert _metric(server, "ocireg_connections_refused_total") == 1


@in_thread
def test_connections_past_the_total_limit_are_refused_whoever_opens_them(tmp_path, servers):
    server = _start(tmp_path, servers, max_connections=4, max_client_connections=2)
    with ExitStack() as stack:
        for source in ("127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"):
            sock = stack.enter_context(_connect(server, source))
            assert b" 200 " in _get(sock, server).split(b"\r\n")[0]
        with _connect(server, "127.0.0.3") as fifth:
            _assert_busy(_read_all(fifth))


@in_thread
def test_a_client_trickling_its_headers_is_cut_off_after_the_header_timeout(
    tmp_path, servers
):
    server = _start(tmp_path, servers, header_timeout=1)
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v2/ HTTP/1.1\r\n")
        received = b""
        # A byte every 0.2 s: each resets the idle timeout, none the header timeout.
        while time.monotonic() - started < 10:
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.2)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            received += chunk
            if not chunk:
                break
        elapsed = time.monotonic() - started
    assert elapsed < 5, f"the connection stayed open {elapsed:.1f} s"
    assert received == b"" or received.startswith(b"HTTP/1.1 408 "), received
    assert _metric(server, "ocireg_header_timeouts_total") == 1


@in_thread
def test_a_partial_request_behind_a_complete_one_is_cut_off_after_the_header_timeout(
    tmp_path, servers
):
    server = _start(tmp_path, servers, header_timeout=1)
    with _connect(server) as sock:
        # One read: a whole request, then the start of the next.
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {server.host}\r\n\r\n"
                     "GET /healthz HTTP/1.1\r\nHo".encode())
        started = time.monotonic()
        received = _read_all(sock)
        elapsed = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 408 " in received
    assert elapsed < 5, f"the connection stayed open {elapsed:.1f} s"


@in_thread
def test_a_slow_upload_body_and_an_idle_keep_alive_connection_outlast_the_header_timeout(
    tmp_path, servers
):
    server = _start(tmp_path, servers, header_timeout=1)
    with _connect(server) as sock:
        sock.sendall(f"POST /v2/slow/app/blobs/uploads/ HTTP/1.1\r\nHost: {server.host}\r\n"
                     "Content-Length: 0\r\n\r\n".encode())
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 202 "), head
        location = head.split(b"\r\nLocation: ")[1].split(b"\r\n")[0].decode()
        # Idle between requests for longer than the header timeout.
        time.sleep(1.5)
        sock.sendall(f"PATCH {location} HTTP/1.1\r\nHost: {server.host}\r\n"
                     "Content-Length: 10\r\n\r\n".encode())
        # The body takes 2.5 s, well past the header timeout.
        for _ in range(10):
            time.sleep(0.25)
            sock.sendall(b"x")
        sock.settimeout(10)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 202 "), answer
    assert b"\r\nRange: 0-9\r\n" in answer


def _send_manifest_headers(sock: socket.socket, server: RegistryProcess, name: str,
                           length: int) -> None:
    sock.sendall(f"PUT /v2/{name}/manifests/v1 HTTP/1.1\r\nHost: {server.host}\r\n"
                 "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                 f"Content-Length: {length}\r\n\r\n".encode())


def test_a_client_may_have_only_so_many_body_bytes_kept_at_once(tmp_path, processes):
    kib = 1024
    server = RegistryProcess(tmp_path / "data").start(
        "--config", _config_file(tmp_path, {"max_client_buffer": 128 * kib})
    )
    processes.append(server)
    with _connect(server) as first, _connect(server) as second:
        _send_manifest_headers(first, server, "a/one", 100 * kib)
        first.sendall(b"{" * (80 * kib))
        # The first body is kept while it arrives; the second would pass the allowance.
        _send_manifest_headers(second, server, "a/two", 100 * kib)
        second.sendall(b"{" * (60 * kib))
        second.settimeout(10)
        answer = second.recv(65536)
        assert answer.startswith(b"HTTP/1.1 429 "), answer[:300]
        assert b"\r\nRetry-After: 1\r\n" in answer
        assert b'"TOOMANYREQUESTS"' in answer
        # Another address has its own allowance.
        with _connect(server, "127.0.0.2") as other:
            _send_manifest_headers(other, server, "a/three", 100 * kib)
            other.sendall(b"{" * (100 * kib))
            other.settimeout(10)
            assert other.recv(65536).startswith(b"HTTP/1.1 400 ")  # not a manifest
        first.sendall(b"{" * (20 * kib))
        first.settimeout(10)
        assert first.recv(65536).startswith(b"HTTP/1.1 400 ")
    # Once the first is over, its bytes are given back.
    with _connect(server) as third:
        _send_manifest_headers(third, server, "a/four", 100 * kib)
        third.sendall(b"{" * (100 * kib))
        third.settimeout(10)
        assert third.recv(65536).startswith(b"HTTP/1.1 400 ")
