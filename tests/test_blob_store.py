"""The filesystem blob store: uploads have one writer at a time, across processes too."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.python.threadpool import ThreadPool

from ocireg.interfaces import UploadInUse
from ocireg.storage.filesystem import FilesystemBlobStore


@pytest.fixture
def pool():
    pool = ThreadPool(1, 4, name="test-blobs")
    pool.start()
    yield pool
    pool.stop()


@pytest_twisted.ensureDeferred
async def test_second_store_on_the_same_directory_cannot_write_an_upload_in_use(tmp_path, pool):
    # Two stores on one directory stand for two ocireg processes sharing storage.
    first = FilesystemBlobStore(str(tmp_path), reactor, pool)
    second = FilesystemBlobStore(str(tmp_path), reactor, pool)
    await first.create_upload("u1")
    writer = await first.open_upload("u1")
    writer.append(b"first writer")

    with pytest.raises(UploadInUse):
        await second.open_upload("u1")

    await writer.close()
    again = await second.open_upload("u1")
    assert again.size == len(b"first writer")
    await again.close()


@pytest_twisted.ensureDeferred
async def test_purging_spares_an_upload_another_process_writes_or_wrote_lately(tmp_path, pool):
    # The purge of abandoned uploads removes bytes before rows: it must not
    # take them from under a writer, nor take bytes written since it looked.
    first = FilesystemBlobStore(str(tmp_path), reactor, pool)
    second = FilesystemBlobStore(str(tmp_path), reactor, pool)
    await first.create_upload("u1")
    writer = await first.open_upload("u1")
    writer.append(b"being written")
    await writer.drained()

    assert not await second.delete_upload_older_than("u1", time.time() + 3600)
    await writer.close()
    assert not await second.delete_upload_older_than("u1", time.time() - 3600)
    assert await second.upload_size("u1") == len(b"being written")

    assert await second.delete_upload_older_than("u1", time.time() + 3600)
    assert await second.upload_size("u1") is None
    assert await second.delete_upload_older_than("u1", time.time() + 3600)
