"""An upload's file, open for appending: bytes queued on the reactor, written on a thread.

The reactor thread only queues what arrives; one thread job at a time
hashes and writes a batch of it, so the digest is ready as soon as the last
byte is written, and `queued` says how far the disk is behind (the body
path pauses the socket on it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from ocireg.digest import Digest, Hasher
from ocireg.interfaces import IUploadFile
from ocireg.storage.fileops import hash_file

#: The most bytes one write job hashes and writes at once.
_WRITE_BATCH = 4 * 1024 * 1024


@implementer(IUploadFile)
class UploadFile:
    """An upload file open for appending, written in batches by one thread job at a time.

    `run(f, *args)` runs `f` on the store's threads; `make_room(n)`, there,
    refuses n more bytes below the reserve; `start_writeback(fd, offset,
    length)`, there, starts writing a batch back to disk; `remember(uuid,
    size, hasher)` keeps the hash state for the next request on the upload.
    """

    def __init__(
        self,
        uuid: str,
        f: BinaryIO,
        hasher: Hasher,
        size: int,
        *,
        run: Callable[..., Deferred],
        make_room: Callable[[int], None],
        start_writeback: Callable[[int, int, int], object],
        remember: Callable[[str, int, Hasher], None],
    ) -> None:
        self._run = run
        self._make_room = make_room
        self._start_writeback = start_writeback
        self._remember = remember
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
        d = self._run(self._write, batch, batch_size)
        d.addCallbacks(self._written, self._write_failed, callbackArgs=(batch_size,))

    def _write(self, batch: list[bytes], size: int) -> None:
        self._make_room(size)
        offset = self._file.tell()
        for chunk in batch:
            self._hasher.update(chunk)
            self._file.write(chunk)
        self._file.flush()
        self._start_writeback(self._file.fileno(), offset, size)

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
            return hash_file(self._file, algorithm).hexdigest()

        hexdigest = await self._run(rehash)
        return Digest(algorithm, hexdigest)

    async def truncate(self, size: int) -> None:
        await self.drained()

        def cut() -> Hasher:
            self._file.truncate(size)
            return hash_file(self._file, "sha256")

        self._hasher = await self._run(cut)
        self.size = size

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.drained()
        finally:
            written = self.size - self.queued
            await self._run(self._file.close)
            if self._failure is None:
                self._remember(self._uuid, written, self._hasher)


async def _raise(error: BaseException) -> None:
    raise error
