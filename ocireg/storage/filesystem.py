"""The blob store on a local filesystem.

Layout under the root: `blobs/<algorithm>/<first two hex>/<hex>` holds each
blob, `uploads/<uuid>` each upload in progress. A blob appears by an atomic
rename of its fsynced upload file, so a crash leaves either the whole blob or
none of it.

A full file system (ENOSPC, EDQUOT) fails an operation with STORAGE_FULL,
which the client is told about, instead of an unexpected error; and upload
writes stop short of the reserve `min_free_space` keeps (ocireg.storage.space).
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import errno
import fcntl
import os
from collections.abc import Callable
from typing import BinaryIO

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadable import isInIOThread
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ocireg.digest import Digest, Hasher, new_hasher
from ocireg.errors import STORAGE_FULL, RegistryError
from ocireg.interfaces import IBlobStore, IUploadFile, UploadInUse
from ocireg.storage.space import Reserve, measure, refusal

_log = Logger()

#: What a write to a full file system fails with.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

#: The most bytes one write job hashes and writes at once.
_WRITE_BATCH = 4 * 1024 * 1024

#: Upload hash states remembered between requests, so a PATCH does not rehash
#: what earlier PATCHes sent.
_REMEMBERED_HASHES = 4096


#: sync_file_range(2)'s flag that starts writing a range back without waiting for it.
_SYNC_FILE_RANGE_WRITE = 2


def _writeback_starter() -> Callable[[int, int, int], object]:
    """A function(fd, offset, length) that starts writing that range to disk, not waiting.

    Linux's sync_file_range (Python has no binding); elsewhere nothing. The
    commit's fsync then finds little left to write: without it, a big blob's
    dirty pages all wait for that one fsync, at the end of the push.
    """
    libc_name = ctypes.util.find_library("c")
    try:
        function = ctypes.CDLL(libc_name, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return lambda fd, offset, length: function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _space_checked(f: Callable, *args: object) -> object:
    """`f(*args)`, with a full file system's OSError turned into STORAGE_FULL."""
    try:
        return f(*args)
    except OSError as e:
        if e.errno not in _NO_SPACE:
            raise
        _log.warn("the data directory is out of space: {error}", error=str(e))
        raise RegistryError(STORAGE_FULL) from e


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@implementer(IBlobStore)
class FilesystemBlobStore:
    """Blobs and uploads as files under `root`; disk work runs on `threadpool`.

    Upload writes leave `reserve` free on the file system.
    """

    def __init__(
        self, root: str, reactor: IReactorThreads, threadpool: ThreadPool,
        reserve: Reserve | None = None,
    ) -> None:
        self._root = root
        self._reserve = reserve or Reserve()
        self._reactor = reactor
        self._pool = threadpool
        self._uploads = os.path.join(root, "uploads")
        self._blobs = os.path.join(root, "blobs")
        os.makedirs(self._uploads, exist_ok=True)
        os.makedirs(self._blobs, exist_ok=True)
        #: Starts the writeback of what an upload wrote (see `_writeback_starter`).
        self.start_writeback = _writeback_starter()
        # uuid -> (size, running sha256) of uploads this process wrote last.
        self._hashes: collections.OrderedDict[str, tuple[int, Hasher]] = (
            collections.OrderedDict()
        )

    def _run(self, f, *args) -> Deferred:
        return deferToThreadPool(self._reactor, self._pool, _space_checked, f, *args)

    def make_room(self, size: int) -> None:
        """In a pool thread: raise STORAGE_FULL unless `size` more bytes leave the reserve free."""
        if not self._reserve.bytes and not self._reserve.fraction:
            return
        usage = measure(self._root, self._reserve)
        if usage.free - size < usage.reserve:
            _log.warn("an upload stopped at the data directory's reserve: {state}",
                      state=usage.describe())
            raise refusal(usage)

    def _upload_path(self, uuid: str) -> str:
        return os.path.join(self._uploads, uuid)

    def blob_path(self, digest: Digest) -> str:
        return os.path.join(self._blobs, digest.algorithm, digest.hex[:2], digest.hex)

    def create_upload(self, uuid: str) -> Deferred:
        def create() -> None:
            with open(self._upload_path(uuid), "xb"):
                pass

        return self._run(create)

    def upload_size(self, uuid: str) -> Deferred:
        def size() -> int | None:
            try:
                return os.stat(self._upload_path(uuid)).st_size
            except FileNotFoundError:
                return None

        return self._run(size)

    def open_upload(self, uuid: str) -> Deferred:
        remembered = self._hashes.pop(uuid, None)

        def open_() -> UploadFile | None:
            try:
                f = open(self._upload_path(uuid), "r+b")
            except FileNotFoundError:
                return None
            try:
                # Held until the writer closes: another process of this
                # registry (--workers, or a second host on shared storage)
                # cannot append to the same upload meanwhile.
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                raise UploadInUse(uuid) from None
            size = os.fstat(f.fileno()).st_size
            if remembered is not None and remembered[0] == size:
                hasher = remembered[1]
            else:
                hasher = _hash_file(f, "sha256")
            f.seek(size)
            return UploadFile(self, uuid, f, hasher, size)

        return self._run(open_)

    def _remember(self, uuid: str, size: int, hasher: Hasher) -> None:
        self._hashes[uuid] = (size, hasher)
        while len(self._hashes) > _REMEMBERED_HASHES:
            self._hashes.popitem(last=False)

    def commit_upload(self, uuid: str, digest: Digest) -> Deferred:
        self._hashes.pop(uuid, None)
        source = self._upload_path(uuid)
        target = self.blob_path(digest)

        def commit() -> bool:
            if os.path.exists(target):
                # Stored already (same digest, same bytes): freshened, so that
                # garbage collection spares it as it would a new file, and the
                # upload left as it is until its metadata commits.
                try:
                    os.utime(target)
                    return False
                except FileNotFoundError:
                    pass  # collected meanwhile: stored anew below
            fd = os.open(source, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            # A blob's mtime says when it was stored: garbage collection
            # spares blob files younger than its grace period.
            os.utime(source)
            parent = os.path.dirname(target)
            os.makedirs(parent, exist_ok=True)
            os.rename(source, target)
            _fsync_dir(parent)
            return True

        return self._run(commit)

    def restore_upload(self, uuid: str, digest: Digest) -> Deferred:
        source = self._upload_path(uuid)
        target = self.blob_path(digest)

        def restore() -> None:
            # A rename takes no space: it works on the full disk that likely
            # failed the metadata commit.
            os.rename(target, source)
            _fsync_dir(self._uploads)

        return self._run(restore)

    def delete_upload(self, uuid: str) -> Deferred:
        self._hashes.pop(uuid, None)
        return self._run(_remove, self._upload_path(uuid))

    def delete_upload_older_than(self, uuid: str, before: float) -> Deferred:
        path = self._upload_path(uuid)

        def delete() -> bool:
            try:
                f = open(path, "rb")
            except FileNotFoundError:
                return True
            with f:
                try:
                    # Held while the file goes: a writer (of any process) that
                    # opens it meanwhile finds it in use, never an unlinked file.
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                if os.fstat(f.fileno()).st_mtime >= before:
                    return False
                _remove(path)
            return True

        self._hashes.pop(uuid, None)
        return self._run(delete)

    def blob_size(self, digest: Digest) -> Deferred:
        def size() -> int | None:
            try:
                return os.stat(self.blob_path(digest)).st_size
            except FileNotFoundError:
                return None

        return self._run(size)

    def missing_blobs(self, digests: list[Digest]) -> Deferred:
        def missing() -> list[Digest]:
            return [d for d in digests if not os.path.exists(self.blob_path(d))]

        if not isInIOThread():
            # A caller off the reactor thread may wait, and here does: the SQLite
            # store's database thread, which runs a whole tag write and would
            # otherwise wait anyway, for a hop to the reactor, to a pool thread
            # and back.
            try:
                return succeed(missing())
            except Exception:
                return fail()
        return self._run(missing)

    def open_blob(self, digest: Digest) -> Deferred:
        def open_() -> BinaryIO | None:
            try:
                return open(self.blob_path(digest), "rb")
            except FileNotFoundError:
                return None

        return self._run(open_)

    def delete_blob(self, digest: Digest) -> Deferred:
        return self._run(_remove, self.blob_path(digest))

    def delete_blob_older_than(self, digest: Digest, before: float) -> Deferred:
        path = self.blob_path(digest)

        def delete() -> bool:
            try:
                if os.stat(path).st_mtime >= before:
                    return False
            except FileNotFoundError:
                return False
            _remove(path)
            return True

        return self._run(delete)

    def blob_groups(self) -> Deferred:
        def groups() -> list[str]:
            found = []
            for algorithm in sorted(os.listdir(self._blobs)):
                folder = os.path.join(self._blobs, algorithm)
                if os.path.isdir(folder):
                    found.extend(f"{algorithm}/{p}" for p in sorted(os.listdir(folder)))
            return found

        return self._run(groups)

    def stored_blobs(self, group: str) -> Deferred:
        algorithm = group.split("/", 1)[0]
        folder = os.path.join(self._blobs, group)

        def listing() -> list[tuple[Digest, int, float]]:
            found = []
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                return []
            for entry in entries:
                try:
                    digest = Digest.parse(f"{algorithm}:{entry.name}")
                    stat = entry.stat()
                except (RegistryError, FileNotFoundError):
                    continue
                found.append((digest, stat.st_size, stat.st_mtime))
            return found

        return self._run(listing)

    def stored_uploads(self) -> Deferred:
        def listing() -> list[tuple[str, int, float]]:
            found = []
            for entry in os.scandir(self._uploads):
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                found.append((entry.name, stat.st_size, stat.st_mtime))
            return found

        return self._run(listing)

    def quarantine_blob(self, digest: Digest) -> Deferred:
        source = self.blob_path(digest)
        target = os.path.join(self._root, "quarantine", f"{digest.algorithm}-{digest.hex}")

        def move() -> None:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                os.replace(source, target)
            except FileNotFoundError:
                pass

        return self._run(move)

    def verify_blob(self, digest: Digest, size: int) -> Deferred:
        path = self.blob_path(digest)

        def verify() -> str | None:
            try:
                f = open(path, "rb")
            except FileNotFoundError:
                return "missing"
            with f:
                if os.fstat(f.fileno()).st_size != size:
                    return "size"
                if _hash_file(f, digest.algorithm).hexdigest() != digest.hex:
                    return "digest"
            return None

        return self._run(verify)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def _hash_file(f: BinaryIO, algorithm: str) -> Hasher:
    hasher = new_hasher(algorithm)
    f.seek(0)
    while chunk := f.read(1024 * 1024):
        hasher.update(chunk)
    return hasher


@implementer(IUploadFile)
class UploadFile:
    """An upload file open for appending, written in batches by one thread job at a time."""

    def __init__(
        self, store: FilesystemBlobStore, uuid: str, f: BinaryIO, hasher: Hasher, size: int
    ) -> None:
        self._store = store
        self._uuid = uuid
        self._file = f
        self._hasher = hasher
        self.size = size
        self.queued = 0
        self._pending: list[bytes] = []
        self._writing = False
        self._failure: BaseException | None = None
        self._waiters: list[tuple[int, Deferred]] = []
        self._closed = False

    def append(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("upload file is closed")
        if self._failure is not None:
            # A write failed: the upload is lost; its error is reported at close.
            return
        self._pending.append(data)
        self.size += len(data)
        self.queued += len(data)
        self._write_next()

    def _write_next(self) -> None:
        if self._writing or not self._pending or self._failure is not None:
            return
        batch = []
        batch_size = 0
        while self._pending and batch_size < _WRITE_BATCH:
            chunk = self._pending.pop(0)
            batch.append(chunk)
            batch_size += len(chunk)
        self._writing = True
        # The chunks go to the thread as they are: joining them here would copy
        # every byte once more, on the reactor thread.
        d = self._store._run(self._write, batch, batch_size)
        d.addCallbacks(self._written, self._write_failed, callbackArgs=(batch_size,))

    def _write(self, batch: list[bytes], size: int) -> None:
        self._store.make_room(size)
        offset = self._file.tell()
        for chunk in batch:
            self._hasher.update(chunk)
            self._file.write(chunk)
        self._file.flush()
        self._store.start_writeback(self._file.fileno(), offset, size)

    def _written(self, _: None, length: int) -> None:
        self._writing = False
        self.queued -= length
        self._notify()
        self._write_next()

    def _write_failed(self, failure) -> None:
        self._writing = False
        self._failure = failure.value
        self._pending = []
        self.queued = 0
        self._notify()

    def _notify(self) -> None:
        ready = [
            (t, d) for (t, d) in self._waiters if self._failure is not None or self.queued <= t
        ]
        self._waiters = [w for w in self._waiters if w not in ready]
        for _, d in ready:
            if self._failure is not None:
                d.errback(self._failure)
            else:
                d.callback(None)

    def drained(self, threshold: int = 0) -> Deferred:
        if self._failure is not None:
            return Deferred.fromCoroutine(_raise(self._failure))
        if self.queued <= threshold:
            return succeed(None)
        d: Deferred = Deferred()
        self._waiters.append((threshold, d))
        return d

    async def digest(self, algorithm: str = "sha256") -> Digest:
        await self.drained()
        if algorithm == "sha256":
            return Digest("sha256", self._hasher.copy().hexdigest())

        def rehash() -> str:
            self._file.flush()
            return _hash_file(self._file, algorithm).hexdigest()

        hexdigest = await self._store._run(rehash)
        return Digest(algorithm, hexdigest)

    async def truncate(self, size: int) -> None:
        await self.drained()

        def cut() -> Hasher:
            self._file.truncate(size)
            return _hash_file(self._file, "sha256")

        self._hasher = await self._store._run(cut)
        self.size = size

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.drained()
        finally:
            written = self.size - self.queued
            await self._store._run(self._file.close)
            if self._failure is None:
                self._store._remember(self._uuid, written, self._hasher)


async def _raise(error: BaseException) -> None:
    raise error
