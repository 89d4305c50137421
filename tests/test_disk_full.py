"""A full disk: the registry says so (507), keeps uploads resumable, and frees space itself.

The data directory is on a real small file system each test mounts (a 64 MiB
tmpfs), filled by uploads or by a file written beside it, as an operator's
disk fills. Mounting needs root: elsewhere the tests skip, saying so.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher

from ocireg.config import Config
from ocireg.service import RegistryService
from tests.api_helpers import (
    assert_oci_error,
    digest_of,
    header,
    make_image,
    push_blob,
    push_image,
    put_manifest,
    random_bytes,
    sleep,
    start_upload,
    with_query,
)
from tests.conftest import InProcessServer

MiB = 1024 * 1024
DISK_SIZE = 64 * MiB


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs mounted for the test, unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting the small file system these tests need takes root")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mountpoint)],
        capture_output=True, text=True, timeout=30,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True, timeout=30)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(disk: Path, leave: int = 0) -> Path:
    """Write a file on `disk` until about `leave` bytes are free; the file."""
    filler = disk / "filler"
    with open(filler, "ab") as f:
        block = b"\0" * MiB
        while (room := free_bytes(disk) - leave) > 0:
            try:
                f.write(block[: min(room, MiB)])
                f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
    return filler


class Warnings:
    """Log events at warn and above while a test runs."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        level = event.get("log_level")
        if level is not None and level.name in ("warn", "error", "critical"):
            self.events.append(event)

    def texts(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events]

    def tracebacks(self) -> list[dict]:
        return [e for e in self.events if "log_failure" in e]


@pytest.fixture
def warnings():
    observer = Warnings()
    globalLogPublisher.addObserver(observer)
    try:
        yield observer
    finally:
        globalLogPublisher.removeObserver(observer)


async def _servers(disk: Path, database: str):
    """start(**settings): ocireg on `disk` (in-process), stopped after the test."""
    services: list[RegistryService] = []

    async def start(**settings) -> InProcessServer:
        config = Config(
            listen=("tcp:0:interface=127.0.0.1",), data_dir=str(disk / "data"),
            database=database, gc_interval=0, **settings,
        )
        service = RegistryService(config, reactor)
        service.startService()
        ports = await service.ready
        services.append(service)
        return InProcessServer(service, ports[0])

    try:
        yield start
    finally:
        for service in services:
            await service.stopService()


@pytest_twisted.async_yield_fixture
async def start(small_disk, database):
    """Servers on the small disk, on each metadata backend."""
    async for start in _servers(small_disk, database):
        yield start


@pytest_twisted.async_yield_fixture
async def start_sqlite(small_disk):
    """Servers on the small disk with SQLite: the metadata database is on it too."""
    async for start in _servers(small_disk, ""):
        yield start


async def send(server, method: str, path: str, data: bytes = b"", **headers):
    response = await server.request(
        method, path, data=data,
        headers={"Content-Type": "application/octet-stream", **headers}, timeout=120,
    )
    body = await response.content()
    return response, body


async def assert_out_of_space(response) -> None:
    error = await assert_oci_error(response, 507, "DENIED")
    assert "out of storage space" in error["message"], error


async def upload_size(server, location: str) -> int:
    """The bytes an upload holds, from its status's Range (which cannot say 0)."""
    response, body = await send(server, "GET", location)
    assert response.code == 204, (response.code, body)
    return int(header(response, "Range").split("-")[1]) + 1


# 1. A write that meets a full disk


@pytest_twisted.ensureDeferred
async def test_patch_meeting_a_full_disk_is_507_with_a_warning_and_resumes_once_space_is_freed(
    start, small_disk, warnings
):
    server = await start(min_free_space=0)
    filler = fill(small_disk, leave=24 * MiB)
    location = await start_upload(server, "team/app")
    data = random_bytes(32 * MiB)

    response = await server.request(
        "PATCH", location, data=data, headers={"Content-Type": "application/octet-stream"},
        timeout=120,
    )
    await assert_out_of_space(response)
    assert any("out of space" in text for text in warnings.texts()), warnings.texts()
    assert not warnings.tracebacks(), warnings.texts()

    received = await upload_size(server, location)
    assert 0 < received < len(data)
    filler.unlink()
    response, body = await send(
        server, "PATCH", location, data[received:],
        **{"Content-Range": f"{received}-{len(data) - 1}"},
    )
    assert response.code == 202, (response.code, body)
    digest = digest_of(data)
    response, body = await send(server, "PUT", with_query(location, f"digest={digest}"))
    assert response.code == 201, (response.code, body)
    response, body = await send(server, "GET", f"/v2/team/app/blobs/{digest}")
    assert response.code == 200 and body == data


def _send_part_and_hang_up(port: int, path: str, length: int, part: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(
            f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        connection.sendall(part)


@pytest_twisted.ensureDeferred
async def test_client_hanging_up_after_its_patch_met_a_full_disk_leaves_a_resumable_upload(
    start, small_disk, warnings
):
    server = await start(min_free_space=0)
    fill(small_disk, leave=8 * MiB)
    location = await start_upload(server, "team/app")

    await deferToThread(
        _send_part_and_hang_up, server.port, location, 32 * MiB, random_bytes(16 * MiB)
    )
    for _ in range(100):
        if not server.registry.is_writing(location.rsplit("/", 1)[1]):
            break
        await sleep(0.05)
    await sleep(0.2)

    assert 0 < await upload_size(server, location) <= 8 * MiB
    assert any("out of space" in text for text in warnings.texts()), warnings.texts()
    assert not warnings.tracebacks(), warnings.texts()


@pytest_twisted.ensureDeferred
async def test_monolithic_post_meeting_a_full_disk_is_507_and_leaves_room_after(
    start, small_disk
):
    server = await start(min_free_space=0)
    fill(small_disk, leave=8 * MiB)
    data = random_bytes(16 * MiB)

    response, _ = await send(
        server, "POST", f"/v2/team/app/blobs/uploads/?digest={digest_of(data)}", data
    )
    await assert_out_of_space(response)
    response, _ = await send(server, "HEAD", f"/v2/team/app/blobs/{digest_of(data)}")
    assert response.code == 404
    assert not os.listdir(small_disk / "data" / "uploads")
    assert free_bytes(small_disk) >= 7 * MiB


# 2. The reserve, and freeing space on a full disk


@pytest_twisted.ensureDeferred
async def test_below_min_free_space_new_uploads_are_refused_at_once_while_reads_and_deletes_work(
    start, small_disk
):
    server = await start(min_free_space="40MiB")
    image = make_image(layers=2)
    await push_image(server, "team/app", image)
    opened = await start_upload(server, "team/app")
    filler = fill(small_disk, leave=30 * MiB)
    await sleep(1.1)  # past the free-space measurement's one second of caching

    response, _ = await send(server, "POST", "/v2/team/app/blobs/uploads/")
    await assert_out_of_space(response)
    data = random_bytes(64 * 1024)
    response, _ = await send(
        server, "POST", f"/v2/team/app/blobs/uploads/?digest={digest_of(data)}", data
    )
    await assert_out_of_space(response)
    response, _ = await send(server, "PATCH", opened, data)
    await assert_out_of_space(response)
    response, _ = await send(server, "GET", opened)
    assert header(response, "Range") == "0-0"  # nothing received
    assert [f.stat().st_size for f in (small_disk / "data" / "uploads").iterdir()] == [0]

    response, body = await send(server, "GET", "/v2/team/app/manifests/latest",
                                Accept=image.media_type)
    assert response.code == 200 and body == image.body
    for digest, blob in image.blobs.items():
        response, body = await send(server, "GET", f"/v2/team/app/blobs/{digest}")
        assert response.code == 200 and body == blob
    response, _ = await send(server, "DELETE", opened)
    assert response.code == 204
    response, _ = await send(server, "DELETE", "/v2/team/app/manifests/latest")
    assert response.code == 202

    filler.unlink()
    await sleep(1.1)
    assert await push_blob(server, "team/app", data) == digest_of(data)


@pytest_twisted.ensureDeferred
async def test_an_upload_under_way_stops_at_min_free_space_and_metadata_writes_go_on(
    start, small_disk
):
    server = await start(min_free_space="24MiB")
    small = make_image(layers=1)
    for blob in small.blobs.values():
        await push_blob(server, "team/small", blob)
    location = await start_upload(server, "team/app")
    data = random_bytes(56 * MiB)

    response, _ = await send(server, "PATCH", location, data)
    await assert_out_of_space(response)
    assert free_bytes(small_disk) >= 20 * MiB
    received = await upload_size(server, location)
    assert 0 < received <= DISK_SIZE - 24 * MiB

    # The reserve's room: a tag write, a delete and a cancel all commit.
    response = await put_manifest(server, "team/small", "latest", small.body, small.media_type)
    assert response.code == 201
    response, _ = await send(server, "DELETE", "/v2/team/small/manifests/latest")
    assert response.code == 202
    response, _ = await send(server, "DELETE", location)
    assert response.code == 204
    await sleep(1.1)
    await push_blob(server, "team/app", random_bytes(4 * MiB))


@pytest_twisted.ensureDeferred
async def test_garbage_collection_frees_a_disk_that_pushes_filled_to_min_free_space(
    start, small_disk
):
    server = await start(min_free_space="24MiB", gc_grace_period=0)
    pushed = 0
    while True:
        data = random_bytes(4 * MiB)
        response, _ = await send(
            server, "POST", f"/v2/team/app/blobs/uploads/?digest={digest_of(data)}", data
        )
        if response.code != 201:
            await assert_out_of_space(response)
            break
        pushed += 1
    assert pushed >= 8
    assert free_bytes(small_disk) <= 28 * MiB

    response, body = await send(server, "DELETE", "/api/v1/repositories/team/app/staging")
    assert response.code == 200, body
    response, body = await send(server, "POST", "/api/v1/gc", b"{}",
                                **{"Content-Type": "application/json"})
    assert response.code == 200, body
    assert json.loads(body)["blobs"] == pushed
    assert free_bytes(small_disk) > DISK_SIZE - 8 * MiB
    await sleep(1.1)
    await push_blob(server, "team/app", random_bytes(4 * MiB))


@pytest_twisted.ensureDeferred
async def test_cancelling_an_upload_on_a_full_disk_frees_its_bytes(start_sqlite, small_disk):
    server = await start_sqlite(min_free_space=0)
    location = await start_upload(server, "team/app")
    response, _ = await send(server, "PATCH", location, random_bytes(DISK_SIZE + MiB))
    await assert_out_of_space(response)
    assert free_bytes(small_disk) < MiB

    response, body = await send(server, "DELETE", location)
    assert response.code == 204, (response.code, body)
    assert free_bytes(small_disk) > DISK_SIZE - 8 * MiB
    response, _ = await send(server, "GET", location)
    await assert_oci_error(response, 404, "BLOB_UPLOAD_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_housekeeping_purges_an_abandoned_upload_that_filled_the_disk(
    start_sqlite, small_disk, warnings
):
    server = await start_sqlite(min_free_space=0, upload_ttl=0)
    location = await start_upload(server, "team/app")
    response, _ = await send(server, "PATCH", location, random_bytes(DISK_SIZE + MiB))
    await assert_out_of_space(response)
    assert free_bytes(small_disk) < MiB
    await sleep(0.1)  # the upload's last write is before the purge's cut-off

    await server.service.housekeeping.run()
    assert server.service.housekeeping.expiry.purged == 1
    assert free_bytes(small_disk) > DISK_SIZE - 8 * MiB
    response, _ = await send(server, "GET", location)
    await assert_oci_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    assert not warnings.tracebacks(), warnings.texts()


# 3. Readiness and metrics


@pytest_twisted.ensureDeferred
async def test_readyz_is_503_and_metrics_show_the_free_space_below_min_free_space(
    start, small_disk
):
    server = await start(min_free_space="16MiB")
    response, body = await send(server, "GET", "/readyz")
    assert response.code == 200, body
    assert json.loads(body)["checks"]["free_space"] == "ok"

    filler = fill(small_disk, leave=8 * MiB)
    await sleep(1.1)
    response, body = await send(server, "GET", "/readyz")
    assert response.code == 503, body
    reason = json.loads(body)["checks"]["free_space"]
    assert "below min_free_space (16.0 MiB)" in reason, reason
    response, body = await send(server, "GET", "/metrics")
    figures = {
        line.split()[0]: float(line.split()[1])
        for line in body.decode().splitlines() if line.startswith("ocireg_data_dir_")
    }
    assert figures["ocireg_data_dir_min_free_bytes"] == 16 * MiB
    assert figures["ocireg_data_dir_size_bytes"] == DISK_SIZE
    assert figures["ocireg_data_dir_free_bytes"] < 9 * MiB

    filler.unlink()
    await sleep(1.1)
    response, body = await send(server, "GET", "/readyz")
    assert response.code == 200, body


# 4. Completing an upload on a full disk


@pytest_twisted.ensureDeferred
async def test_completing_an_upload_when_its_metadata_cannot_be_written_leaves_it_resumable(
    start_sqlite, small_disk
):
    # SQLite: the metadata database is on the full disk too.
    server = await start_sqlite(min_free_space=0)
    location = await start_upload(server, "team/app")
    data = random_bytes(MiB)
    response, _ = await send(server, "PATCH", location, data)
    assert response.code == 202
    filler = fill(small_disk)
    digest = digest_of(data)

    response, _ = await send(server, "PUT", with_query(location, f"digest={digest}"))
    await assert_out_of_space(response)
    assert await upload_size(server, location) == len(data)
    response, _ = await send(server, "HEAD", f"/v2/team/app/blobs/{digest}")
    assert response.code == 404

    filler.unlink()
    response, body = await send(server, "PUT", with_query(location, f"digest={digest}"))
    assert response.code == 201, (response.code, body)
    response, body = await send(server, "GET", f"/v2/team/app/blobs/{digest}")
    assert response.code == 200 and body == data


@pytest_twisted.ensureDeferred
async def test_completing_an_upload_of_a_stored_blob_on_a_full_disk_keeps_both(
    start_sqlite, small_disk
):
    server = await start_sqlite(min_free_space=0)
    data = random_bytes(MiB)
    digest = await push_blob(server, "team/one", data)
    location = await start_upload(server, "team/two")
    response, _ = await send(server, "PATCH", location, data)
    assert response.code == 202
    filler = fill(small_disk)

    response, _ = await send(server, "PUT", with_query(location, f"digest={digest}"))
    await assert_out_of_space(response)
    assert await upload_size(server, location) == len(data)
    response, body = await send(server, "GET", f"/v2/team/one/blobs/{digest}")
    assert response.code == 200 and body == data

    filler.unlink()
    response, body = await send(server, "PUT", with_query(location, f"digest={digest}"))
    assert response.code == 201, (response.code, body)
    response, body = await send(server, "GET", f"/v2/team/two/blobs/{digest}")
    assert response.code == 200 and body == data
    assert not os.listdir(small_disk / "data" / "uploads")
