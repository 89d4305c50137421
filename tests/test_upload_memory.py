"""A 1 GiB upload streams through the server: its memory does not grow with the body."""

from __future__ import annotations

import hashlib
import http.client
import os

import pytest

from tests.support import RegistryProcess, proc_status_kib, wait_for

GIB = 1024 * 1024 * 1024
MIB = 1024 * 1024
#: How much the server's peak memory may grow while it receives 1 GiB.
ALLOWED_GROWTH = 64 * MIB


_BLOCK = os.urandom(MIB)


def _body(size: int, block: bytes = _BLOCK):
    """`size` bytes in 1 MiB pieces, not all alike, made as they are sent."""
    for i in range(size // MIB):
        yield i.to_bytes(8, "big") + block[8:]


def _digest(size: int) -> str:
    hasher = hashlib.sha256()
    for piece in _body(size):
        hasher.update(piece)
    return "sha256:" + hasher.hexdigest()


def _start_upload(conn: http.client.HTTPConnection, name: str) -> str:
    conn.request("POST", f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    response = conn.getresponse()
    response.read()
    assert response.status == 202
    return response.getheader("Location")


@pytest.fixture
def server_process(tmp_path):
    server = RegistryProcess(tmp_path / "data").start()
    try:
        yield server
    finally:
        server.stop()


def _grows_by(server: RegistryProcess, upload) -> int:
    pid = server.process.pid
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    # Warm up: the first requests import and allocate what every request needs.
    location = _start_upload(conn, "warm/up")
    conn.request("PATCH", location, body=b"x" * MIB, headers={"Content-Length": str(MIB)})
    conn.getresponse().read()
    baseline = proc_status_kib(pid, "VmRSS") * 1024
    upload(conn)
    conn.close()
    return proc_status_kib(pid, "VmHWM") * 1024 - baseline


def test_monolithic_1gib_upload_keeps_server_memory_flat(server_process):
    digest = _digest(GIB)

    def upload(conn: http.client.HTTPConnection) -> None:
        location = _start_upload(conn, "big/monolithic")
        conn.request(
            "PUT", f"{location}?digest={digest}", body=_body(GIB),
            headers={"Content-Length": str(GIB), "Content-Type": "application/octet-stream"},
        )
        response = conn.getresponse()
        assert response.status == 201, response.read()
        response.read()

    growth = _grows_by(server_process, upload)
    assert growth < ALLOWED_GROWTH, f"server memory grew by {growth / MIB:.0f} MiB"


def test_chunked_transfer_1gib_patch_keeps_server_memory_flat(server_process):
    """docker's way: one PATCH, chunked transfer encoding, no Content-Range."""
    digest = _digest(GIB)

    def upload(conn: http.client.HTTPConnection) -> None:
        location = _start_upload(conn, "big/chunked")
        conn.request("PATCH", location, body=_body(GIB), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        response.read()
        assert response.status == 202
        assert response.getheader("Range") == f"0-{GIB - 1}"
        conn.request("PUT", f"{location}?digest={digest}", headers={"Content-Length": "0"})
        response = conn.getresponse()
        assert response.status == 201, response.read()
        response.read()

    growth = _grows_by(server_process, upload)
    assert growth < ALLOWED_GROWTH, f"server memory grew by {growth / MIB:.0f} MiB"


def test_memory_goes_back_once_concurrent_uploads_end(server_process):
    """Eight uploads at once need their buffers; once they are over, the server lets them go."""
    from concurrent.futures import ThreadPoolExecutor

    size = 256 * MIB
    digest = _digest(size)
    pid = server_process.process.pid

    def upload(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server_process.port, timeout=120)
        try:
            location = _start_upload(conn, f"many/u{i}")
            conn.request(
                "PUT", f"{location}?digest={digest}", body=_body(size),
                headers={"Content-Length": str(size),
                         "Content-Type": "application/octet-stream"},
            )
            response = conn.getresponse()
            response.read()
            assert response.status == 201
        finally:
            conn.close()

    upload(-1)  # warm up: what every upload needs is allocated once
    baseline = proc_status_kib(pid, "VmRSS") * 1024
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, range(8), timeout=300))
    peak = proc_status_kib(pid, "VmHWM") * 1024

    def kept() -> int:
        return proc_status_kib(pid, "VmRSS") * 1024 - baseline

    # The heap is trimmed on a thread once the last upload is over (ocireg.heap):
    # give it a moment, not more.
    wait_for(
        lambda: kept() < 16 * MIB, "the memory to come back after the uploads", timeout=5,
        log=lambda: f"server kept {kept() / MIB:.0f} MiB (peak {peak / MIB:.0f} MiB)",
    )
