"""In-memory stand-ins for ocireg's stores, for anyone testing code against ocireg.

`MemoryBlobStore` is an `IBlobStore` that keeps every byte in memory and
answers with Deferreds that have already fired: no threads, no files. It
behaves as `ocireg.storage.filesystem.FilesystemBlobStore` does (the same
answers, the same errors), which tests/test_interface_blob_store.py checks by
running one behaviour suite against both. Time (when a blob was stored, an
upload last written) is read from the `IReactorTime` it is given, so a
`task.Clock` drives garbage collection's and expiry's ages; with
`write_delay`, an upload's appended bytes are written that many seconds of
that clock later, so backpressure (`queued`, `drained`) can be watched. With
`failing_writes` set (say to `OSError(errno.ENOSPC, ...)`), every write
fails as a full disk's would: the upload file then reports that error from
`drained`, `digest`, `truncate` and `close`, and drops what is appended
after it, as the filesystem store's does.

`memory_metadata_store` opens the real SQLite metadata store on an
in-memory database: nothing is written to disk and nothing outlives the
store. It needs a reactor that runs threads (the store keeps its connection
on a thread of its own), so not a bare `Clock`.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from zope.interface import implementer

from ocireg.db.sqlite import SQLiteMetadataStore
from ocireg.digest import Digest
from ocireg.interfaces import IBlobStore, IUploadFile, UploadInUse

__all__ = ["MemoryBlobStore", "MemoryUploadFile", "memory_metadata_store"]


async def memory_metadata_store(reactor: IReactorThreads) -> SQLiteMetadataStore:
    """The SQLite metadata store, migrated, on a database that lives in memory; close it after."""
    return await SQLiteMetadataStore.open(":memory:", reactor)


class _Upload:
    """An upload's bytes, when they were last written, and whether a writer holds them."""

    def __init__(self, written_at: float) -> None:
        self.data = bytearray()
        self.written_at = written_at
        self.held = False


class _Blob:
    def __init__(self, data: bytes, stored_at: float) -> None:
        self.data = data
        self.stored_at = stored_at


def _answer(f, *args) -> Deferred:
    """A fired Deferred of `f(*args)`, or of its error: the filesystem store's answer, at once."""
    try:
        return succeed(f(*args))
    except Exception:
        return fail()


@implementer(IBlobStore)
class MemoryBlobStore:
    """Blobs and uploads in memory; times read from `clock` (see the module).

    `quarantined` holds the bytes `quarantine_blob` moved aside, by digest;
    while `failing_writes` is set, each write of an upload's bytes fails with it.
    """

    def __init__(self, clock: IReactorTime, write_delay: float | None = None) -> None:
        self._clock = clock
        self._write_delay = write_delay
        self.failing_writes: BaseException | None = None
        self._uploads: dict[str, _Upload] = {}
        self._blobs: dict[Digest, _Blob] = {}
        self.quarantined: dict[Digest, bytes] = {}

    def create_upload(self, uuid: str) -> Deferred:
        def create() -> None:
            if uuid in self._uploads:
                raise FileExistsError(f"upload {uuid} exists")
            self._uploads[uuid] = _Upload(self._clock.seconds())

        return _answer(create)

    def open_upload(self, uuid: str) -> Deferred:
        def open_() -> MemoryUploadFile | None:
            upload = self._uploads.get(uuid)
            if upload is None:
                return None
            if upload.held:
                raise UploadInUse(uuid)
            upload.held = True
            return MemoryUploadFile(self, upload)

        return _answer(open_)

    def upload_size(self, uuid: str) -> Deferred:
        upload = self._uploads.get(uuid)
        return succeed(None if upload is None else len(upload.data))

    def commit_upload(self, uuid: str, digest: Digest) -> Deferred:
        def commit() -> bool:
            blob = self._blobs.get(digest)
            if blob is not None:
                # Stored already: freshened, the upload left for delete_upload.
                blob.stored_at = self._clock.seconds()
                return False
            upload = self._uploads.pop(uuid, None)
            if upload is None:
                raise FileNotFoundError(f"no upload {uuid}")
            self._blobs[digest] = _Blob(bytes(upload.data), self._clock.seconds())
            return True

        return _answer(commit)

    def restore_upload(self, uuid: str, digest: Digest) -> Deferred:
        def restore() -> None:
            blob = self._blobs.pop(digest, None)
            if blob is None:
                raise FileNotFoundError(f"no blob {digest}")
            upload = self._uploads[uuid] = _Upload(blob.stored_at)
            upload.data += blob.data

        return _answer(restore)

    def delete_upload(self, uuid: str) -> Deferred:
        self._uploads.pop(uuid, None)
        return succeed(None)

    def delete_upload_older_than(self, uuid: str, before: float) -> Deferred:
        upload = self._uploads.get(uuid)
        if upload is None:
            return succeed(True)
        if upload.held or upload.written_at >= before:
            return succeed(False)
        del self._uploads[uuid]
        return succeed(True)

    def missing_blobs(self, digests: list[Digest]) -> Deferred:
        # At once on any thread, as ITransaction's rule asks.
        return succeed([d for d in digests if d not in self._blobs])

    def blob_size(self, digest: Digest) -> Deferred:
        blob = self._blobs.get(digest)
        return succeed(None if blob is None else len(blob.data))

    def open_blob(self, digest: Digest) -> Deferred:
        blob = self._blobs.get(digest)
        f: BinaryIO | None = None if blob is None else io.BytesIO(blob.data)
        return succeed(f)

    def delete_blob(self, digest: Digest) -> Deferred:
        self._blobs.pop(digest, None)
        return succeed(None)

    def delete_blob_older_than(self, digest: Digest, before: float) -> Deferred:
        blob = self._blobs.get(digest)
        if blob is None or blob.stored_at >= before:
            return succeed(False)
        del self._blobs[digest]
        return succeed(True)

    def blob_groups(self) -> Deferred:
        return succeed(sorted({_group(d) for d in self._blobs}))

    def stored_blobs(self, group: str) -> Deferred:
        return succeed([
            (d, len(blob.data), blob.stored_at)
            for d, blob in self._blobs.items() if _group(d) == group
        ])

    def stored_uploads(self) -> Deferred:
        return succeed([
            (uuid, len(upload.data), upload.written_at) for uuid, upload in self._uploads.items()
        ])

    def verify_blob(self, digest: Digest, size: int) -> Deferred:
        blob = self._blobs.get(digest)
        if blob is None:
            return succeed("missing")
        if len(blob.data) != size:
            return succeed("size")
        if Digest.of(blob.data, digest.algorithm) != digest:
            return succeed("digest")
        return succeed(None)

    def quarantine_blob(self, digest: Digest) -> Deferred:
        blob = self._blobs.pop(digest, None)
        if blob is not None:
            self.quarantined[digest] = blob.data
        return succeed(None)

    def corrupt_blob(self, digest: Digest, data: bytes) -> None:
        """Replace a stored blob's bytes with `data`, as a failing disk would (for scrub tests)."""
        self._blobs[digest].data = data


def _group(digest: Digest) -> str:
    # The filesystem store's grouping: by algorithm and first two hex digits.
    return f"{digest.algorithm}/{digest.hex[:2]}"


@implementer(IUploadFile)
class MemoryUploadFile:
    """An upload held open for appending; see `MemoryBlobStore` for when appends are written."""

    def __init__(self, store: MemoryBlobStore, upload: _Upload) -> None:
        self._store = store
        self._upload = upload
        self.size = len(upload.data)
        self.queued = 0
        self._waiters: list[tuple[int, Deferred]] = []
        self._failure: BaseException | None = None
        self._closed = False

    def append(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("upload file is closed")
        if self._failure is not None:
            # A write failed: the upload is lost; its error is reported at close.
            return
        self.size += len(data)
        if self._store._write_delay is None:
            self._write(bytes(data))
            return
        self.queued += len(data)
        self._store._clock.callLater(self._store._write_delay, self._write, bytes(data))

    def _write(self, data: bytes) -> None:
        if self._failure is not None:
            # Queued before an earlier write failed: dropped with it.
            return
        if self._store.failing_writes is not None:
            self._failure = self._store.failing_writes
            self.queued = 0
        else:
            self._upload.data += data
            self._upload.written_at = self._store._clock.seconds()
            if self._store._write_delay is not None:
                self.queued -= len(data)
        ready = [
            (t, d) for t, d in self._waiters if self._failure is not None or self.queued <= t
        ]
        self._waiters = [w for w in self._waiters if w not in ready]
        for _, d in ready:
            if self._failure is not None:
                d.errback(self._failure)
            else:
                d.callback(None)

    def drained(self, threshold: int = 0) -> Deferred:
        if self._failure is not None:
            return fail(self._failure)
        if self.queued <= threshold:
            return succeed(None)
        d: Deferred = Deferred()
        self._waiters.append((threshold, d))
        return d

    def digest(self, algorithm: str = "sha256") -> Deferred:
        def digest(_: None) -> Digest:
            return Digest.of(bytes(self._upload.data), algorithm)

        return self.drained().addCallback(digest)

    def truncate(self, size: int) -> Deferred:
        def cut(_: None) -> None:
            data = self._upload.data
            # As a file's truncate: longer means zeros.
            data[size:] = bytes(max(0, size - len(data)))
            self._upload.written_at = self._store._clock.seconds()
            self.size = size

        return self.drained().addCallback(cut)

    def close(self) -> Deferred:
        if self._closed:
            return succeed(None)
        self._closed = True

        def release(result: object) -> object:
            # Released even when a write failed, as closing the file releases its lock.
            self._upload.held = False
            return result

        return self.drained().addBoth(release)
