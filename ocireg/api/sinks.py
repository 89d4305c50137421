"""The sinks a request body is written into as it arrives, instead of twisted.web's spool.

`UploadBody` streams a blob into its upload's file, pausing the socket while
the writer is behind; `GuardedBody` keeps a small body only once the caller
is allowed and within the client's allowance, so a refusal is answered
before the body is read; `DiscardedBody` counts a body nobody reads. Which
route takes which is `ocireg.api.streaming`'s.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Awaitable, Callable
from typing import IO, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger

from ocireg.errors import (
    BODY_TOO_LARGE,
    SIZE_INVALID,
    TOO_MANY_REQUESTS,
    UNAVAILABLE,
    RegistryError,
)
from ocireg.interfaces import IUploadFile

_log = Logger()

#: Pause reading from the socket when this much is waiting to be written...
HIGH_WATER = 8 * 1024 * 1024
#: ...and resume once the writer is down to this.
LOW_WATER = 2 * 1024 * 1024
#: Bytes read from the socket at once while a blob body streams in (Twisted's
#: default is 64 KiB): a sixteenth of the reads and chunk hand-offs, which were
#: most of the reactor thread's work on an upload.
UPLOAD_READ_SIZE = 1024 * 1024

#: A kept body moves from memory to a temporary file past this size: freed heap
#: is not given back to the system, so a burst of large manifests would leave
#: the process that much larger for good.
SPOOL_OVER = 64 * 1024
#: Bytes of a body read while its sender is checked, before the socket pauses.
EARLY_LIMIT = 64 * 1024

OpenUpload = Callable[[], Awaitable[tuple[str, IUploadFile]]]
#: Answers a request at once, before its body is read (`RegistryRequest.answer_early`).
Refuse = Callable[[RegistryError], None]
#: Whether the caller may send the body; raises the refusal.
Check = Callable[[], Awaitable[object]]


class Allowance(Protocol):
    """Bytes of kept bodies a client may have at once."""

    def take(self, size: int) -> bool:
        """Hold `size` more bytes, if the client may; False (holding nothing) if not."""

    def give(self, size: int) -> None:
        """Let go of `size` held bytes."""


class _Outcome:
    """The outcome of a sink's check (or of opening its upload), for whoever awaits it."""

    def __init__(self) -> None:
        self.done = False
        self.error: BaseException | None = None
        self._waiting: list[Deferred] = []

    def settle(self, error: BaseException | None = None) -> None:
        self.done, self.error = True, error
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    async def wait(self) -> None:
        if not self.done:
            d: Deferred = Deferred()
            self._waiting.append(d)
            await d


class _Reading:
    """Pausing and resuming the transport a body comes from."""

    _transport: IPushProducer
    _paused = False
    #: Set by the request once the whole body has arrived.
    complete = False

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._transport.pauseProducing()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            # Once the body is in, the channel resumes reading itself when
            # the response is done; resuming earlier would read ahead.
            if not self.complete:
                self._transport.resumeProducing()


class BufferedBody:
    """A body kept in memory (past `SPOOL_OVER` bytes in a temporary file), refused
    with 413 once it exceeds `limit` bytes."""

    complete = False

    def __init__(self, limit: int, length: int | None) -> None:
        self._limit = limit
        self._buffer: IO[bytes] = io.BytesIO()
        self._size = 0
        self.too_large = length is not None and length > limit

    def write(self, data: bytes) -> None:
        if self.too_large:
            return
        if self._size + len(data) > self._limit:
            self.too_large = True
            self._buffer.close()
            self._buffer = io.BytesIO()
            return
        if self._size + len(data) > SPOOL_OVER and isinstance(self._buffer, io.BytesIO):
            spooled = tempfile.TemporaryFile()
            spooled.write(self._buffer.getvalue())
            self._buffer.close()
            self._buffer = spooled
        self._buffer.write(data)
        self._size += len(data)

    def tell(self) -> int:
        return self._buffer.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._buffer.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        return self._buffer.read(size)

    def close(self) -> None:
        self._buffer.close()

    def _too_large(self) -> RegistryError:
        return RegistryError(BODY_TOO_LARGE, f"request body is larger than {self._limit} bytes")

    def value(self) -> bytes:
        """The whole body, or 413 if it was too large to keep."""
        if self.too_large:
            raise self._too_large()
        self._buffer.seek(0)
        return self._buffer.read()


class GuardedBody(BufferedBody, _Reading):
    """A small body kept only once `check` (if any) allows the request, within `allowance`.

    While `check` runs, at most `EARLY_LIMIT` bytes are read before the socket
    pauses. When it refuses, or the body is too large, or the client already
    has its allowance's worth of bodies kept, `refuse` answers at once, before
    the body is read, and what arrives of it is discarded. A refusal that
    comes once the body is in is the handler's to answer: `kept` raises it.
    """

    def __init__(
        self,
        check: Check | None,
        limit: int,
        length: int | None,
        transport: IPushProducer,
        refuse: Refuse,
        allowance: Allowance,
    ) -> None:
        super().__init__(limit, length)
        self._transport = transport
        self._refuse = refuse
        self._allowance = allowance
        #: Bytes held from the allowance.
        self._held = 0
        self._allowed = check is None
        self._checked = _Outcome()
        self.refused = False
        if self.too_large:
            self._checked.settle(error := self._too_large())
            self._refused_with(error)
        elif check is None:
            self._checked.settle()
        else:
            Deferred.fromCoroutine(self._check(check))

    async def _check(self, check: Check) -> None:
        try:
            await check()
        except RegistryError as e:
            self._checked.settle(e)
            self._refused_with(e)
        except Exception as e:
            _log.failure("checking a request before reading its body")
            self._checked.settle(e)
            self._refused_with(RegistryError(UNAVAILABLE, "the request could not be checked"))
        else:
            self._allowed = True
            self._checked.settle()
        self._resume()

    async def kept(self) -> bytes:
        """The whole body, once `check` has allowed it; its refusal, or 413, raised."""
        await self._checked.wait()
        if self._checked.error is not None:
            raise self._checked.error
        return self.value()

    def _refused_with(self, error: RegistryError) -> None:
        if self.refused:
            return
        self.refused = True
        self.close()
        self._buffer = io.BytesIO()
        self._refuse(error)

    def write(self, data: bytes) -> None:
        if self.refused:
            return
        if not self._allowance.take(len(data)):
            self._refused_with(RegistryError(
                TOO_MANY_REQUESTS, "too many request bodies from this address at once",
                headers={"Retry-After": "1"},
            ))
            return
        self._held += len(data)
        super().write(data)
        if self.too_large:
            self._refused_with(self._too_large())
        elif not self._allowed and self._size > EARLY_LIMIT:
            self._pause()

    def close(self) -> None:
        super().close()
        self._allowance.give(self._held)
        self._held = 0



class DiscardedBody(BufferedBody):
    """The body of a request whose handler reads none: counted, not kept."""

    def __init__(self) -> None:
        super().__init__(0, None)

    def write(self, data: bytes) -> None:
        pass


class UploadBody(_Reading):
    """A blob upload body, streamed into an upload file as it arrives.

    `open_upload` runs as soon as the headers are in; chunks that arrive
    before it is done (the caller's credentials may wait for a bcrypt check)
    wait in memory, the socket paused past `EARLY_LIMIT` bytes. If it fails,
    the rest of the body is read and discarded, and the handler reports the
    error.
    """

    def __init__(
        self,
        open_upload: OpenUpload,
        transport: IPushProducer,
        release: Callable[[str, IUploadFile], Awaitable[object]],
        expected_length: int | None = None,
    ) -> None:
        self._transport = transport
        self._release = release
        self.received = 0
        #: What the chunk's Content-Range says it holds; bytes past it are not kept.
        self._expected = expected_length
        self._start = 0
        self._early: list[bytes] = []
        self._early_size = 0
        self._draining = False
        self._uuid: str | None = None
        self._upload: IUploadFile | None = None
        self._error: BaseException | None = None
        self._opened = _Outcome()
        Deferred.fromCoroutine(self._open(open_upload))

    async def _open(self, open_upload: OpenUpload) -> None:
        try:
            self._uuid, self._upload = await open_upload()
        except BaseException as e:
            self._error = e
            self._early = []
            self._resume()
        else:
            if hasattr(self._transport, "bufferSize"):
                # A TCP transport (a TLS one ignores it); the connection keeps it for
                # its later requests, harmlessly: a read returns what is there. Only
                # now: a sender not yet allowed is read in small pieces.
                self._transport.bufferSize = UPLOAD_READ_SIZE
            self._start = self._upload.size
            for chunk in self._early:
                self._upload.append(chunk)
            self._early = []
            self._throttle()
        self._opened.settle(self._error)

    def write(self, data: bytes) -> None:
        if self._expected is not None and self.received + len(data) > self._expected:
            data = data[: max(self._expected - self.received, 0)]
            self.received = self._expected + 1
        else:
            self.received += len(data)
        if self._error is not None or not data:
            return
        if self._upload is None:
            self._early.append(data)
            self._early_size += len(data)
            if self._early_size > EARLY_LIMIT:
                self._pause()
            return
        self._upload.append(data)
        self._throttle()

    def _throttle(self) -> None:
        assert self._upload is not None
        if self._upload.queued <= HIGH_WATER:
            self._resume()
            return
        self._pause()
        if not self._draining:
            self._draining = True
            self._upload.drained(LOW_WATER).addBoth(self._drained)

    def _drained(self, result: object) -> None:
        self._draining = False
        self._resume()


    def tell(self) -> int:
        return self.received

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass

    async def result(self) -> tuple[str, IUploadFile]:
        """The upload the body went into, once it is open; or the reason it could not be."""
        await self._opened.wait()
        if self._error is not None:
            raise self._error
        assert self._uuid is not None and self._upload is not None
        if self._expected is not None and self.received != self._expected:
            # A chunked body that does not match its Content-Range: undo it,
            # so the upload is as it was before this request.
            await self._upload.truncate(self._start)
            await self._release(self._uuid, self._upload)
            raise RegistryError(
                SIZE_INVALID,
                f"the chunk's Content-Range says {self._expected} bytes, but "
                + ("more were sent" if self.received > self._expected
                   else f"{self.received} were sent"),
            )
        return self._uuid, self._upload

    def connection_lost(self) -> Deferred:
        """The client went away mid-body: keep what arrived, so the upload can resume.

        The Deferred fires once it is kept (a stop waits for it before closing the stores).
        """
        return Deferred.fromCoroutine(self._keep_received()).addErrback(_keeping_failed)

    async def _keep_received(self) -> None:
        await self._opened.wait()
        if self._upload is not None and self._uuid is not None:
            size = await self._release(self._uuid, self._upload)
            _log.info("upload {uuid} cut off by the client at {size} bytes", uuid=self._uuid,
                      size=size)


def _keeping_failed(failure) -> None:
    if failure.check(RegistryError):
        # Said already where it arose (a full disk is logged as a warning).
        _log.info("a cut-off upload's last bytes were lost: {error}", error=failure.value)
    else:
        _log.failure("keeping a cut-off upload's bytes", failure)


class RefusedBody(DiscardedBody):
    """An upload body read and discarded, for a request known from its headers to be
    malformed; `check` (the caller's authorisation) still comes first."""

    def __init__(self, error: RegistryError, check: Check) -> None:
        super().__init__()
        self.error = error
        self._check = check

    async def result(self) -> tuple[str, IUploadFile]:
        await self._check()
        raise self.error


