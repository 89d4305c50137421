"""The blob store on a local filesystem.

A blob appears by an atomic rename of its fsynced upload file, so a crash
leaves either the whole blob or none of it. Where each file lives:
`ocireg.storage.layout`; the blocking operations, run on the store's
threads: `ocireg.storage.fileops`; an upload's writer:
`ocireg.storage.uploadfile`. Upload writes stop short of the reserve
`min_free_space` keeps (`ocireg.storage.space`).
"""

from __future__ import annotations

import collections
import fcntl
import os
from typing import BinaryIO

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadable import isInIOThread
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ocireg.digest import Digest, Hasher
from ocireg.errors import RegistryError
from ocireg.interfaces import IBlobStore, UploadInUse
from ocireg.storage.fileops import (
    fsync_dir,
    hash_file,
    remove,
    space_checked,
    writeback_starter,
)
from ocireg.storage.layout import Layout
from ocireg.storage.space import Reserve, measure, refusal
from ocireg.storage.uploadfile import UploadFile

_log = Logger()

#: Upload hash states remembered between requests, so a PATCH does not rehash
#: what earlier PATCHes sent.
_REMEMBERED_HASHES = 4096


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
        self._layout = Layout(root)
        os.makedirs(self._layout.uploads, exist_ok=True)
        os.makedirs(self._layout.blobs, exist_ok=True)
        #: Starts the writeback of what an upload wrote (see `writeback_starter`).
        self.start_writeback = writeback_starter()
        # uuid -> (size, running sha256) of uploads this process wrote last.
        self._hashes: collections.OrderedDict[str, tuple[int, Hasher]] = (
            collections.OrderedDict()
        )

    def _run(self, f, *args) -> Deferred:
        return deferToThreadPool(self._reactor, self._pool, space_checked, f, *args)

    def make_room(self, size: int) -> None:
        """In a pool thread: raise STORAGE_FULL unless `size` more bytes leave the reserve free."""
        if not self._reserve.bytes and not self._reserve.fraction:
            return
        usage = measure(self._root, self._reserve)
        if usage.free - size < usage.reserve:
            _log.warn("an upload stopped at the data directory's reserve: {state}",
                      state=usage.describe())
            raise refusal(usage)

    def blob_path(self, digest: Digest) -> str:
        return self._layout.blob(digest)

    def create_upload(self, uuid: str) -> Deferred:
        def create() -> None:
            with open(self._layout.upload(uuid), "xb"):
                pass

        return self._run(create)

    def upload_size(self, uuid: str) -> Deferred:
        def size() -> int | None:
            try:
                return os.stat(self._layout.upload(uuid)).st_size
            except FileNotFoundError:
                return None

        return self._run(size)

    def open_upload(self, uuid: str) -> Deferred:
        remembered = self._hashes.pop(uuid, None)

        def open_() -> UploadFile | None:
            try:
                f = open(self._layout.upload(uuid), "r+b")
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
                hasher = hash_file(f, "sha256")
            f.seek(size)
            return UploadFile(
                uuid, f, hasher, size, run=self._run, make_room=self.make_room,
                start_writeback=self.start_writeback, remember=self._remember,
            )

        return self._run(open_)

    def _remember(self, uuid: str, size: int, hasher: Hasher) -> None:
        self._hashes[uuid] = (size, hasher)
        while len(self._hashes) > _REMEMBERED_HASHES:
            self._hashes.popitem(last=False)

    def commit_upload(self, uuid: str, digest: Digest) -> Deferred:
        self._hashes.pop(uuid, None)
        source = self._layout.upload(uuid)
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
            fsync_dir(parent)
            return True

        return self._run(commit)

    def restore_upload(self, uuid: str, digest: Digest) -> Deferred:
        source = self._layout.upload(uuid)
        target = self.blob_path(digest)

        def restore() -> None:
            # A rename takes no space: it works on the full disk that likely
            # failed the metadata commit.
            os.rename(target, source)
            fsync_dir(self._layout.uploads)

        return self._run(restore)

    def delete_upload(self, uuid: str) -> Deferred:
        self._hashes.pop(uuid, None)
        return self._run(remove, self._layout.upload(uuid))

    def delete_upload_older_than(self, uuid: str, before: float) -> Deferred:
        path = self._layout.upload(uuid)

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
                remove(path)
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
        return self._run(remove, self.blob_path(digest))

    def delete_blob_older_than(self, digest: Digest, before: float) -> Deferred:
        path = self.blob_path(digest)

        def delete() -> bool:
            try:
                if os.stat(path).st_mtime >= before:
                    return False
            except FileNotFoundError:
                return False
            remove(path)
            return True

        return self._run(delete)

    def blob_groups(self) -> Deferred:
        def groups() -> list[str]:
            found = []
            for algorithm in sorted(os.listdir(self._layout.blobs)):
                folder = os.path.join(self._layout.blobs, algorithm)
                if os.path.isdir(folder):
                    found.extend(f"{algorithm}/{p}" for p in sorted(os.listdir(folder)))
            return found

        return self._run(groups)

    def stored_blobs(self, group: str) -> Deferred:
        algorithm = group.split("/", 1)[0]
        folder = self._layout.blob_group(group)

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
            for entry in os.scandir(self._layout.uploads):
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                found.append((entry.name, stat.st_size, stat.st_mtime))
            return found

        return self._run(listing)

    def quarantine_blob(self, digest: Digest) -> Deferred:
        source = self.blob_path(digest)
        target = self._layout.quarantine(digest)

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
                if hash_file(f, digest.algorithm).hexdigest() != digest.hex:
                    return "digest"
            return None

        return self._run(verify)
