"""Upload bodies stream into the upload's file as they arrive, not after the request ends.

The clients are raw sockets in a thread, against the in-process server.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time

from tests.support import in_thread

MIB = 1024 * 1024


def _start_upload(server) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/v2/stream/test/blobs/uploads/", headers={"Content-Length": "0"})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 202
    return response.getheader("Location")


def _wait_for_size(path, at_least: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    size = 0
    while time.monotonic() < deadline:
        size = os.path.getsize(path) if os.path.exists(path) else 0
        if size >= at_least:
            return size
        time.sleep(0.05)
    return size


@in_thread
def test_patch_body_reaches_the_upload_file_before_the_request_ends(server):
    location = _start_upload(server)
    uuid = location.rsplit("/", 1)[1]
    upload_file = server.data_dir / "uploads" / uuid
    first_half = os.urandom(8 * MIB)
    second_half = os.urandom(8 * MIB)

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: {server.host}\r\n"
            f"Content-Length: {16 * MIB}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        )
        sock.sendall(first_half)
        # Half the body is sent and the request is not complete: the bytes
        # must already be on their way into the upload file.
        assert _wait_for_size(upload_file, 4 * MIB) >= 4 * MIB
        sock.sendall(second_half)
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 202"), reply
    assert b"Range: 0-16777215" in reply

    digest = "sha256:" + hashlib.sha256(first_half + second_half).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("PUT", f"{location}?digest={digest}", headers={"Content-Length": "0"})
    response = conn.getresponse()
    assert response.status == 201, response.read()


@in_thread
def test_client_cut_off_mid_patch_leaves_a_resumable_upload(server):
    location = _start_upload(server)
    received = os.urandom(3 * MIB)
    rest = os.urandom(2 * MIB)

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: {server.host}\r\n"
            f"Content-Length: {5 * MIB}\r\n\r\n".encode()
        )
        sock.sendall(received)
        uuid = location.rsplit("/", 1)[1]
        assert _wait_for_size(server.data_dir / "uploads" / uuid, 3 * MIB) == 3 * MIB

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    deadline = time.monotonic() + 10
    while True:
        # The server may still be closing the cut-off request's writer.
        conn.request("GET", location)
        status = conn.getresponse()
        status.read()
        if status.status == 204 and status.getheader("Range") == f"0-{3 * MIB - 1}":
            break
        assert time.monotonic() < deadline, (status.status, status.getheader("Range"))
        time.sleep(0.05)

    conn.request(
        "PATCH", location, body=rest,
        headers={"Content-Range": f"{3 * MIB}-{5 * MIB - 1}", "Content-Length": str(2 * MIB)},
    )
    response = conn.getresponse()
    response.read()
    assert response.status == 202
    assert response.getheader("Range") == f"0-{5 * MIB - 1}"
    digest = "sha256:" + hashlib.sha256(received + rest).hexdigest()
    conn.request("PUT", f"{location}?digest={digest}", headers={"Content-Length": "0"})
    response = conn.getresponse()
    assert response.status == 201, response.read()
