"""The request body path: where each request's body goes as it arrives.

twisted.web would spool every body to memory or a temporary file before the
handler runs. Instead, `RegistryRequest.gotLength` asks `route_body` for a
sink as soon as the headers are in: blob upload bodies (PATCH, PUT and
monolithic POST) stream into the upload's file through a digest-updating
writer, pausing the socket while the writer is behind. A manifest body, or a
management API body, is kept only once the caller is known to be allowed
(`GuardedBody`): a refusal is answered before the body is read. Small bodies
of other requests (the token endpoint's form) are kept up to a small limit;
the registry API's other requests read no body, so theirs is discarded.
"""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Awaitable, Callable
from typing import IO, Protocol
from urllib.parse import parse_qs, unquote

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger

from ocireg.api.uploadheaders import check_content_range
from ocireg.domain.registry_operations import RegistryOperations
from ocireg.errors import (
    BLOB_UPLOAD_INVALID,
    BODY_TOO_LARGE,
    DIGEST_INVALID,
    SIZE_INVALID,
    TOO_MANY_REQUESTS,
    UNAVAILABLE,
    RegistryError,
)
from ocireg.interfaces import IUploadFile
from ocireg.manifest import MAX_MANIFEST_SIZE

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
#: The largest body a request outside the registry and management APIs (the
#: token endpoint's form) may send.
SMALL_BODY_LIMIT = 64 * 1024

_UPLOAD = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]+)$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/[^/]+$")
_UPLOADS = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?$")
#: ASCII digits, no more than 19 (past any upload's size, and int() refuses past 4300).
_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?([0-9]{1,19})-([0-9]{1,19})(?:/(?:[0-9]+|\*))?$")

OpenUpload = Callable[[], Awaitable[tuple[str, IUploadFile]]]


class UploadGuard(Protocol):
    """Whether a request may send its body; checked before a byte is kept."""

    async def may_push(self, name: str) -> str | None:
        """Raise unless the caller may push to `name`; the id for a new upload (or None)."""

    async def may_write(self, name: str, uuid: str) -> None:
        """Raise unless the caller may write to upload `uuid` of `name`."""

    async def client(self) -> str | None:
        """Whose upload sessions a new one counts with (`uploads.client_key`); None: nobody's."""

    async def may_put_manifest(self, name: str) -> None:
        """Raise unless the caller may push a manifest to `name`."""

    async def may_manage(self) -> None:
        """Raise unless the caller may use the management API."""


class BufferedBody:
    """A body kept in memory (past `SPOOL_OVER` bytes in a temporary file), refused
    with 413 once it exceeds `limit` bytes."""

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

    def value(self) -> bytes:
        """The whole body, or 413 if it was too large to keep."""
        if self.too_large:
            raise RegistryError(BODY_TOO_LARGE, f"request body is larger than {self._limit} bytes")
        self._buffer.seek(0)
        return self._buffer.read()


Refuse = Callable[[RegistryError], None]


class Allowance(Protocol):
    """Bytes of kept bodies a client may have at once."""

    def take(self, size: int) -> bool:
        """Hold `size` more bytes, if the client may; False (holding nothing) if not."""

    def give(self, size: int) -> None:
        """Let go of `size` held bytes."""


class GuardedBody(BufferedBody):
    """A small body kept only once `check` (if any) allows the request, within `allowance`.

    While `check` runs, at most `EARLY_LIMIT` bytes are read before the socket
    pauses. When it refuses, or the body is too large, or the client already
    has its allowance's worth of bodies kept, `refuse` answers at once, before
    the body is read, and what arrives of it is discarded.
    """

    def __init__(
        self,
        check: Callable[[], Awaitable[object]] | None,
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
        self.refused = False
        self._paused = False
        #: Set by the request once the whole body has arrived.
        self.complete = False
        if self.too_large:
            self._refused_with(self._too_large())
        elif check is not None:
            Deferred.fromCoroutine(self._check(check))

    def _too_large(self) -> RegistryError:
        return RegistryError(BODY_TOO_LARGE, f"request body is larger than {self._limit} bytes")

    async def _check(self, check: Callable[[], Awaitable[object]]) -> None:
        try:
            await check()
        except RegistryError as e:
            self._refused_with(e)
        except Exception:
            _log.failure("checking a request before reading its body")
            self._refused_with(RegistryError(UNAVAILABLE, "the request could not be checked"))
        else:
            self._allowed = True
        self._resume()

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
        elif not self._allowed and self._size > EARLY_LIMIT and not self._paused:
            self._paused = True
            self._transport.pauseProducing()

    def close(self) -> None:
        super().close()
        self._allowance.give(self._held)
        self._held = 0

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            # Once the body is in, the channel resumes reading itself when
            # the response is done; resuming earlier would read ahead.
            if not self.complete:
                self._transport.resumeProducing()


class DiscardedBody(BufferedBody):
    """The body of a request whose handler reads none: counted, not kept."""

    def __init__(self) -> None:
        super().__init__(0, None)

    def write(self, data: bytes) -> None:
        pass


class UploadBody:
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
        self._paused = False
        self._draining = False
        #: Set by the request once the whole body has arrived.
        self.complete = False
        self._uuid: str | None = None
        self._upload: IUploadFile | None = None
        self._error: BaseException | None = None
        self._opened = False
        self._waiting: list[Deferred] = []
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
        self._opened = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def _when_opened(self) -> Deferred:
        if self._opened:
            return succeed(None)
        d: Deferred = Deferred()
        self._waiting.append(d)
        return d

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
        await self._when_opened()
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
        await self._when_opened()
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
    """A body read and discarded, for a request already known to be refused."""

    def __init__(self, error: RegistryError) -> None:
        super().__init__()
        self.error = error

    async def result(self) -> tuple[str, IUploadFile]:
        raise self.error


def parse_content_range(value: str, length: int | None) -> tuple[int, int]:
    """The first and last offsets of a chunk's `Content-Range`, checked against its length."""
    match = _CONTENT_RANGE.match(value.strip())
    if not match:
        raise RegistryError(
            BLOB_UPLOAD_INVALID, f"malformed Content-Range {value[:100]!r}", {"range": value[:200]}
        )
    start, end = int(match.group(1)), int(match.group(2))
    check_content_range(start, end, length)
    return start, end


def route_body(
    registry: RegistryOperations,
    method: bytes,
    target: bytes,
    headers,
    length: int | None,
    transport: IPushProducer,
    guard: UploadGuard,
    refuse: Refuse,
    allowance: Allowance,
):
    """The sink for the body of a request `method target` with these headers.

    An upload body is written only once `guard` allows it; until then its
    chunks wait in memory (the socket paused past the high water mark), and
    when it refuses they are discarded. A manifest or management body is
    kept only once `guard` allows it, and every kept body within the
    client's `allowance`; a refusal goes to `refuse`, which answers before
    the body is read.
    """
    path, _, query = target.decode("latin-1").partition("?")
    path = unquote(path)
    try:
        if method in (b"PATCH", b"PUT") and (match := _UPLOAD.match(path)):
            return _chunk_body(
                registry, method, match, query, headers, length, transport, guard
            )
        if method == b"POST" and (match := _UPLOADS.match(path)):
            args = parse_qs(query)
            if "digest" in args and "mount" not in args:
                name = match.group("name")

                async def open_new() -> tuple[str, IUploadFile]:
                    uuid = await guard.may_push(name)
                    return await registry.new_upload_for_body(name, uuid, await guard.client())

                return UploadBody(open_new, transport, registry.release_upload)
    except RegistryError as e:
        return RefusedBody(e)
    if method == b"PUT" and (match := _MANIFEST.match(path)):
        name = match.group("name")
        return GuardedBody(lambda: guard.may_put_manifest(name), MAX_MANIFEST_SIZE, length,
                           transport, refuse, allowance)
    if path.startswith("/api/"):
        return GuardedBody(guard.may_manage, MAX_MANIFEST_SIZE, length, transport, refuse,
                           allowance)
    if path.startswith("/v2/"):
        return DiscardedBody()
    return GuardedBody(None, SMALL_BODY_LIMIT, length, transport, refuse, allowance)


def _chunk_body(
    registry, method, match, query, headers, length, transport, guard
) -> UploadBody:
    name, uuid = match.group("name"), match.group("uuid")
    content_range = headers.getRawHeaders(b"content-range")
    start = expected = None
    if content_range:
        start, end = parse_content_range(content_range[0].decode("latin-1"), length)
        expected = end - start + 1
    if method == b"PUT" and not parse_qs(query).get("digest"):
        raise RegistryError(DIGEST_INVALID, "PUT of an upload needs ?digest=")

    async def open_upload() -> tuple[str, IUploadFile]:
        await guard.may_write(name, uuid)
        return uuid, await registry.open_upload(name, uuid, start, length)

    return UploadBody(open_upload, transport, registry.release_upload, expected)
