"""One behaviour suite for `IBlobStore`, run against every implementation.

The filesystem store and `ocireg.testing.MemoryBlobStore` must give the same
answers: a test written against the fake then holds for the real store.
"""

from __future__ import annotations

import errno
import inspect
import os
import time

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.internet.task import Clock, deferLater
from twisted.python.threadpool import ThreadPool
from zope.interface.verify import verifyObject

from ocireg.digest import Digest
from ocireg.interfaces import IBlobStore, IUploadFile, UploadInUse
from ocireg.storage.filesystem import FilesystemBlobStore
from ocireg.storage.uploadfile import UploadFile
from ocireg.testing import MemoryBlobStore, MemoryUploadFile


@attrs.define
class Subject:
    """A blob store under test, with what the suite needs to know of its time and disk."""

    store: IBlobStore
    #: The time the store stamps what it stores with, now.
    now: object
    #: Let a moment of the store's time pass: a Deferred.
    later: object
    #: Replace a stored blob's bytes, as a failing disk would.
    corrupt: object


@pytest.fixture
def pool():
    pool = ThreadPool(1, 4, name="test-blobs")
    pool.start()
    yield pool
    pool.stop()


@pytest.fixture(params=["filesystem", "memory"])
def subject(request, tmp_path, pool) -> Subject:
    if request.param == "filesystem":
        store = FilesystemBlobStore(str(tmp_path), reactor, pool)

        def corrupt(digest: Digest, data: bytes) -> None:
            with open(store.blob_path(digest), "wb") as f:
                f.write(data)

        # Past the filesystem's timestamp granularity.
        return Subject(store, time.time, lambda: deferLater(reactor, 0.02), corrupt)
    clock = Clock()
    clock.advance(1_000_000)
    memory = MemoryBlobStore(clock)

    async def later() -> None:
        clock.advance(1)

    return Subject(memory, clock.seconds, later, memory.corrupt_blob)


async def _store_blob(store: IBlobStore, data: bytes, uuid: str = "u") -> Digest:
    await store.create_upload(uuid)
    upload = await store.open_upload(uuid)
    upload.append(data)
    await upload.close()
    digest = Digest.of(data)
    await store.commit_upload(uuid, digest)
    return digest


async def _read(store: IBlobStore, digest: Digest) -> bytes | None:
    f = await store.open_blob(digest)
    if f is None:
        return None
    with f:
        return f.read()


def test_it_provides_the_interface(subject):
    assert verifyObject(IBlobStore, subject.store)


def _parameters(method) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values()]


@pytest.mark.parametrize(
    ("interface", "real", "fake"),
    [(IBlobStore, FilesystemBlobStore, MemoryBlobStore),
     (IUploadFile, UploadFile, MemoryUploadFile)],
)
def test_the_fakes_methods_take_the_same_arguments_as_the_real_ones(interface, real, fake):
    # Stricter than verifyObject, as buildbot checks its fakes: same names, same defaults.
    for name in interface.names():
        if inspect.isfunction(getattr(real, name, None)):
            assert _parameters(getattr(fake, name)) == _parameters(getattr(real, name)), name


@pytest_twisted.ensureDeferred
async def test_an_open_upload_provides_its_interface(subject):
    await subject.store.create_upload("u")
    upload = await subject.store.open_upload("u")
    try:
        assert verifyObject(IUploadFile, upload)
    finally:
        await upload.close()


@pytest_twisted.ensureDeferred
async def test_a_committed_upload_is_served_as_its_blob(subject):
    store = subject.store
    await store.create_upload("u")
    upload = await store.open_upload("u")
    upload.append(b"hello ")
    upload.append(b"world")
    assert upload.size == 11
    await upload.drained()
    assert upload.queued == 0
    digest = await upload.digest("sha256")
    assert digest == Digest.of(b"hello world")
    assert await upload.digest("sha512") == Digest.of(b"hello world", "sha512")
    await upload.close()
    assert await store.upload_size("u") == 11

    await store.commit_upload("u", digest)

    assert await _read(store, digest) == b"hello world"
    assert await store.blob_size(digest) == 11
    assert await store.upload_size("u") is None
    assert await store.open_upload("u") is None


@pytest_twisted.ensureDeferred
async def test_what_is_not_stored_is_none_and_deleting_it_is_no_error(subject):
    store = subject.store
    absent = Digest.of(b"absent")
    assert await store.open_blob(absent) is None
    assert await store.blob_size(absent) is None
    assert await store.upload_size("nope") is None
    assert await store.open_upload("nope") is None
    await store.delete_blob(absent)
    await store.delete_upload("nope")
    await store.quarantine_blob(absent)
    assert await store.delete_blob_older_than(absent, subject.now() + 10) is False


@pytest_twisted.ensureDeferred
async def test_creating_an_upload_twice_fails(subject):
    await subject.store.create_upload("u")
    with pytest.raises(FileExistsError):
        await subject.store.create_upload("u")


@pytest_twisted.ensureDeferred
async def test_committing_an_upload_that_is_gone_fails(subject):
    with pytest.raises(FileNotFoundError):
        await subject.store.commit_upload("nope", Digest.of(b""))


@pytest_twisted.ensureDeferred
async def test_an_upload_has_one_writer_at_a_time(subject):
    store = subject.store
    await store.create_upload("u1")
    writer = await store.open_upload("u1")
    writer.append(b"first writer")

    with pytest.raises(UploadInUse):
        await store.open_upload("u1")

    await writer.close()
    again = await store.open_upload("u1")
    assert again.size == len(b"first writer")
    # It appends after what is there, and digests the whole.
    again.append(b", again")
    assert await again.digest("sha256") == Digest.of(b"first writer, again")
    await again.close()


@pytest_twisted.ensureDeferred
async def test_appending_to_a_closed_upload_fails_and_closing_twice_does_not(subject):
    await subject.store.create_upload("u")
    upload = await subject.store.open_upload("u")
    await upload.close()
    await upload.close()
    with pytest.raises(ValueError):
        upload.append(b"late")


@pytest_twisted.ensureDeferred
async def test_truncating_an_upload_cuts_its_bytes_and_its_digest(subject):
    store = subject.store
    await store.create_upload("u")
    upload = await store.open_upload("u")
    upload.append(b"keep this, drop that")
    await upload.truncate(9)
    assert upload.size == 9
    assert await upload.digest("sha256") == Digest.of(b"keep this")
    upload.append(b"!")
    await upload.close()
    assert await store.upload_size("u") == 10
    digest = Digest.of(b"keep this!")
    await store.commit_upload("u", digest)
    assert await _read(store, digest) == b"keep this!"


@pytest_twisted.ensureDeferred
async def test_a_deleted_upload_is_gone(subject):
    store = subject.store
    await store.create_upload("u")
    await store.delete_upload("u")
    assert await store.upload_size("u") is None
    assert await store.stored_uploads() == []


@pytest_twisted.ensureDeferred
async def test_missing_blobs_are_those_not_stored_in_the_order_asked(subject):
    store = subject.store
    stored = await _store_blob(store, b"stored")
    one, two = Digest.of(b"one"), Digest.of(b"two")
    assert await store.missing_blobs([two, stored, one]) == [two, one]
    assert await store.missing_blobs([stored]) == []


@pytest_twisted.ensureDeferred
async def test_missing_blobs_off_the_reactor_thread_answers_at_once(subject):
    # What ITransaction's rule needs: the SQLite store awaits it on its own thread.
    stored = await _store_blob(subject.store, b"stored")
    absent = Digest.of(b"absent")

    def on_another_thread():
        d = subject.store.missing_blobs([stored, absent])
        answered = []
        d.addBoth(answered.append)
        return answered

    assert await threads.deferToThread(on_another_thread) == [[absent]]


@pytest_twisted.ensureDeferred
async def test_a_deleted_blob_is_gone(subject):
    store = subject.store
    digest = await _store_blob(store, b"doomed")
    await store.delete_blob(digest)
    assert await store.open_blob(digest) is None
    assert await store.missing_blobs([digest]) == [digest]


@pytest_twisted.ensureDeferred
async def test_a_blob_open_for_reading_still_reads_once_deleted(subject):
    store = subject.store
    digest = await _store_blob(store, b"being read")
    f = await store.open_blob(digest)
    await store.delete_blob(digest)
    with f:
        assert f.read() == b"being read"


@pytest_twisted.ensureDeferred
async def test_delete_blob_older_than_spares_a_blob_stored_since(subject):
    store = subject.store
    digest = await _store_blob(store, b"aging")
    stored_at = subject.now()
    await subject.later()
    boundary = subject.now()
    await subject.later()

    # Stored before `boundary`, but asked with an earlier bound: kept.
    assert await store.delete_blob_older_than(digest, stored_at - 1) is False
    assert await store.blob_size(digest) == 5

    # Stored again (pushed anew) after `boundary`: kept.
    await _store_blob(store, b"aging", uuid="again")
    assert await store.delete_blob_older_than(digest, boundary) is False
    assert await _read(store, digest) == b"aging"

    await subject.later()
    assert await store.delete_blob_older_than(digest, subject.now() + 1) is True
    assert await store.open_blob(digest) is None


@pytest_twisted.ensureDeferred
async def test_blob_groups_list_every_stored_blob_with_its_size_and_time(subject):
    store = subject.store
    before = subject.now()
    blobs = {await _store_blob(store, data, uuid=data.decode()): len(data)
             for data in (b"a", b"bb", b"ccc", b"dddd")}
    after = subject.now()
    listed = {}
    for group in await store.blob_groups():
        assert isinstance(group, str)
        for digest, size, stored_at in await store.stored_blobs(group):
            assert before - 1 <= stored_at <= after + 1
            listed[digest] = size
    assert listed == blobs


@pytest_twisted.ensureDeferred
async def test_stored_uploads_list_each_upload_with_its_size_and_time(subject):
    store = subject.store
    before = subject.now()
    await store.create_upload("empty")
    await store.create_upload("written")
    upload = await store.open_upload("written")
    upload.append(b"12345")
    await upload.close()
    after = subject.now()
    listed = {uuid: size for uuid, size, _ in await store.stored_uploads()}
    assert listed == {"empty": 0, "written": 5}
    for _, _, written_at in await store.stored_uploads():
        assert before - 1 <= written_at <= after + 1


@pytest_twisted.ensureDeferred
async def test_verify_blob_tells_what_is_wrong(subject):
    store = subject.store
    digest = await _store_blob(store, b"pristine")
    assert await store.verify_blob(digest, 8) is None
    assert await store.verify_blob(digest, 9) == "size"
    assert await store.verify_blob(Digest.of(b"absent"), 6) == "missing"
    subject.corrupt(digest, b"PRISTINE")
    assert await store.verify_blob(digest, 8) == "digest"


@pytest_twisted.ensureDeferred
async def test_a_quarantined_blob_is_no_longer_served(subject):
    store = subject.store
    digest = await _store_blob(store, b"suspect")
    await store.quarantine_blob(digest)
    assert await store.open_blob(digest) is None
    assert await store.missing_blobs([digest]) == [digest]
    assert await store.verify_blob(digest, 7) == "missing"


@pytest_twisted.ensureDeferred
async def test_drained_waits_until_at_most_the_threshold_is_queued(subject):
    store = subject.store
    await store.create_upload("u")
    upload = await store.open_upload("u")
    chunk = os.urandom(64 * 1024)
    for _ in range(16):
        upload.append(chunk)
    assert upload.size == 16 * len(chunk)
    assert 0 <= upload.queued <= upload.size
    await upload.drained(len(chunk))
    assert upload.queued <= len(chunk)
    await upload.drained()
    assert upload.queued == 0
    await upload.close()
    assert await store.upload_size("u") == 16 * len(chunk)


@pytest_twisted.ensureDeferred
async def test_the_fakes_writes_can_lag_by_its_clock():
    # Only the fake: a filesystem's writes lag by what the disk does.
    clock = Clock()
    store = MemoryBlobStore(clock, write_delay=1.0)
    await store.create_upload("u")
    upload = await store.open_upload("u")
    upload.append(b"12345")
    upload.append(b"678")
    assert (upload.size, upload.queued) == (8, 8)
    drained = upload.drained(3)
    digest = upload.digest("sha256")
    assert not drained.called and not digest.called
    clock.advance(1)
    assert drained.called and digest.called
    assert upload.queued == 0
    assert await digest == Digest.of(b"12345678")
    await upload.close()


@pytest_twisted.ensureDeferred
async def test_the_fakes_failing_writes_fail_the_upload_as_a_full_disk_does():
    # Only the fake: a real full disk is not at hand. What the filesystem
    # store's UploadFile does when a write fails: the error from drained,
    # digest and close, later appends dropped, the upload free again.
    store = MemoryBlobStore(Clock())
    await store.create_upload("u")
    upload = await store.open_upload("u")
    upload.append(b"kept")
    store.failing_writes = OSError(errno.ENOSPC, "No space left on device")
    upload.append(b"lost")
    upload.append(b"dropped")
    assert upload.queued == 0
    for pending in (upload.drained(), upload.digest("sha256")):
        with pytest.raises(OSError, match="No space"):
            await pending
    with pytest.raises(OSError, match="No space"):
        await upload.close()
    assert await store.upload_size("u") == 4
    store.failing_writes = None
    again = await store.open_upload("u")
    assert again.size == 4
    await again.close()


@pytest_twisted.ensureDeferred
async def test_committing_a_blob_stored_already_freshens_it_and_keeps_the_upload(subject):
    store = subject.store
    await store.create_upload("first")
    first = await store.open_upload("first")
    first.append(b"same bytes")
    await first.close()
    digest = Digest.of(b"same bytes")
    assert await store.commit_upload("first", digest) is True
    await subject.later()
    boundary = subject.now()
    await subject.later()

    await store.create_upload("second")
    second = await store.open_upload("second")
    second.append(b"same bytes")
    await second.close()
    assert await store.commit_upload("second", digest) is False

    assert await store.upload_size("second") == 10
    # Freshened: stored after `boundary` now.
    assert await store.delete_blob_older_than(digest, boundary) is False
    assert await _read(store, digest) == b"same bytes"


@pytest_twisted.ensureDeferred
async def test_a_restored_upload_has_its_bytes_back_and_the_blob_is_gone(subject):
    store = subject.store
    digest = await _store_blob(store, b"undone")
    await store.restore_upload("u", digest)
    assert await store.open_blob(digest) is None
    assert await store.upload_size("u") == 6
    upload = await store.open_upload("u")
    assert await upload.digest("sha256") == digest
    await upload.close()
    with pytest.raises(FileNotFoundError):
        await store.restore_upload("u", Digest.of(b"never stored"))


@pytest_twisted.ensureDeferred
async def test_purging_spares_an_upload_being_written_or_written_lately(subject):
    # The purge of abandoned uploads removes bytes before rows: it must not
    # take them from under a writer, nor take bytes written since it looked.
    store = subject.store
    await store.create_upload("u1")
    writer = await store.open_upload("u1")
    writer.append(b"being written")
    await writer.drained()

    assert not await store.delete_upload_older_than("u1", subject.now() + 3600)
    await writer.close()
    assert not await store.delete_upload_older_than("u1", subject.now() - 3600)
    assert await store.upload_size("u1") == len(b"being written")

    assert await store.delete_upload_older_than("u1", subject.now() + 3600)
    assert await store.upload_size("u1") is None
    assert await store.delete_upload_older_than("u1", subject.now() + 3600)
