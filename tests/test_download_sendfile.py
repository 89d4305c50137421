"""Big blob downloads: sendfile(2) over plain TCP, the buffered producer over TLS.

Both must send exactly the blob's bytes (whole, or a range of the middle), and a
client that hangs up mid-download must leave the server serving.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import ssl
import time

import pytest
import pytest_twisted

from tests.api_helpers import push_blob
from tests.support import RegistryProcess, free_port, self_signed

SIZE = 32 * 1024 * 1024


@pytest.fixture(scope="module")
def blob() -> bytes:
    return os.urandom(SIZE)



@pytest.fixture(params=["tcp", "ssl"])
def endpoint(request, tmp_path, blob):
    """A registry process holding `blob` in team/big, and a way to connect to it.

    Both listeners are on the one process: the blob is pushed over plain TCP,
    then read over the listener the parameter names.
    """
    key, certificate = self_signed(tmp_path)
    tls_port = free_port()
    server = RegistryProcess(tmp_path / "data").start(
        "--listen", f"ssl:{tls_port}:interface=127.0.0.1:privateKey={key}:certKey={certificate}",
    )
    try:
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        push = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        push.request("POST", f"/v2/team/big/blobs/uploads/?digest={digest}", body=blob,
                     headers={"Content-Type": "application/octet-stream"})
        assert push.getresponse().status == 201
        push.close()

        def connect() -> http.client.HTTPConnection:
            if request.param == "tcp":
                return http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            context = ssl.create_default_context(cafile=str(certificate))
            return http.client.HTTPSConnection("127.0.0.1", tls_port, timeout=30,
                                               context=context)

        yield connect, f"/v2/team/big/blobs/{digest}", server
    finally:
        server.stop()


def _get(connection: http.client.HTTPConnection, path: str, **headers: str):
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    return response, response.read()


def test_a_big_download_is_exactly_the_blob_and_a_range_exactly_its_middle(endpoint, blob):
    connect, path, server = endpoint
    connection = connect()
    response, body = _get(connection, path)
    assert response.status == 200
    assert int(response.getheader("Content-Length")) == SIZE
    assert body == blob
    # The same connection again (keep-alive): a range from the middle.
    start, end = SIZE // 3, 2 * SIZE // 3
    response, body = _get(connection, path, Range=f"bytes={start}-{end}")
    assert response.status == 206
    assert response.getheader("Content-Range") == f"bytes {start}-{end}/{SIZE}"
    assert int(response.getheader("Content-Length")) == end - start + 1
    assert body == blob[start:end + 1]
    connection.close()
    assert "Traceback" not in server.log()


def test_a_client_hanging_up_mid_download_leaves_the_server_serving(endpoint, blob):
    connect, path, server = endpoint
    for _ in range(3):
        connection = connect()
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200
        assert response.read(1024 * 1024) == blob[:1024 * 1024]
        # Hang up with most of the blob unsent: an RST, as a killed client would.
        connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        connection.close()
    connection = connect()
    # A request on the new connection is handled only after the server has
    # dealt with the old ones: by then none may still hold the blob open.
    response, body = _get(connection, "/v2/")
    assert response.status == 200
    deadline = time.monotonic() + 5
    while _open_blob_files(server, path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _open_blob_files(server, path) == []
    response, body = _get(connection, path, Range="bytes=-1000")
    assert response.status == 206
    assert body == blob[-1000:]
    response, body = _get(connection, path)
    assert body == blob
    connection.close()
    assert "Traceback" not in server.log()


def _open_blob_files(server: RegistryProcess, path: str) -> list[str]:
    """The server process's open descriptors on the blob's file."""
    hex_digest = path.rsplit(":", 1)[1]
    fd_dir = f"/proc/{server.process.pid}/fd"
    links = []
    for fd in os.listdir(fd_dir):
        try:
            links.append(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            continue  # closed while we looked
    return [link for link in links if hex_digest in link]


@pytest_twisted.ensureDeferred
async def test_plain_tcp_downloads_go_by_sendfile(server, monkeypatch):
    """In process, to see the calls: the body of a big blob goes by os.sendfile."""
    sent: list[int] = []
    real = os.sendfile

    def counting(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        n = real(out_fd, in_fd, offset, count)
        sent.append(n)
        return n

    monkeypatch.setattr(os, "sendfile", counting)
    data = os.urandom(4 * 1024 * 1024)
    digest = await push_blob(server, "team/app", data)
    response = await server.request("GET", f"/v2/team/app/blobs/{digest}")
    assert response.code == 200
    assert await response.content() == data
    assert sum(sent) == len(data)
    sent.clear()
    response = await server.request("GET", f"/v2/team/app/blobs/{digest}",
                                    headers={"Range": "bytes=1000-3000999"})
    assert response.code == 206
    assert await response.content() == data[1000:3001000]
    assert sum(sent) == 3_000_000
