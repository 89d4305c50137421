"""A collection killed (kill -9) between its row deletions and its file deletions.

The bytes it did not get to have no rows left; the operator's next run,
with the same grace period, must remove them.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path

import pytest_twisted
from twisted.internet.defer import ensureDeferred, gatherResults

from tests.domain_helpers import local_registry, push_blob
from tests.support import RegistryProcess

#: Blobs collected: four of the collector's batches, so a kill lands mid-way.
BLOBS = 2000
#: How long ago the blobs were pushed: past the collector's floor for stray
#: files (a minute), well inside the five minutes it used to wait whatever
#: the grace period.
PUSHED_AGO = 120


def _call(server: RegistryProcess, method: str, path: str, document: object = None):
    request = urllib.request.Request(
        server.url + path, method=method,
        data=None if document is None else json.dumps(document).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read() or b"null")


def _blob_files(data_dir: Path) -> set[str]:
    root = data_dir / "blobs" / "sha256"
    if not root.exists():
        return set()
    return {f"sha256:{entry.name}" for group in os.scandir(root) for entry in os.scandir(group)}


def _blob_rows(data_dir: Path) -> set[str]:
    connection = sqlite3.connect(data_dir / "metadata.sqlite3")
    try:
        return {row[0] for row in connection.execute("SELECT digest FROM blobs")}
    finally:
        connection.close()


async def _push_blobs(data_dir: Path) -> None:
    async with local_registry(data_dir) as registry:
        for start in range(0, BLOBS, 100):
            await gatherResults([
                ensureDeferred(push_blob(registry, "team/app", os.urandom(256)))
                for _ in range(start, min(start + 100, BLOBS))
            ])


@pytest_twisted.ensureDeferred
async def test_files_left_by_a_collection_killed_mid_run_go_at_the_next_run(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    await _push_blobs(data_dir)
    pushed = time.time() - PUSHED_AGO
    for name in _blob_files(data_dir):
        path = data_dir / "blobs" / "sha256" / name[7:9] / name[7:]
        os.utime(path, (pushed, pushed))
    config = tmp_path / "ocireg.toml"
    config.write_text("gc_grace_period = 0\ngc_interval = 0\n")

    first = RegistryProcess(data_dir).start("--config", str(config))
    try:
        _call(first, "DELETE", "/api/v1/repositories/team/app/staging")
        collecting = threading.Thread(
            target=lambda: _call_ignoring_the_kill(first), daemon=True
        )
        collecting.start()
        # Polled without a pause: the kill must land while files are going.
        deadline = time.monotonic() + 60
        while len(_blob_files(data_dir)) == BLOBS:
            assert time.monotonic() < deadline, first.log()
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
        collecting.join(30)
    finally:
        first.stop()

    files, rows = _blob_files(data_dir), _blob_rows(data_dir)
    stray = files - rows
    assert stray, "the kill landed outside the window between rows and files"
    assert rows <= files

    second = RegistryProcess(data_dir).start("--config", str(config))
    try:
        report = _call(second, "POST", "/api/v1/gc", {})
    finally:
        second.stop()
    assert report["stray_files"] == len(stray), report
    assert report["blobs"] == len(rows), report
    assert _blob_files(data_dir) == set()
    assert _blob_rows(data_dir) == set()


def _call_ignoring_the_kill(server: RegistryProcess) -> None:
    try:
        _call(server, "POST", "/api/v1/gc", {})
    except OSError:
        pass  # the server was killed under it, as intended
