"""Blob downloads: `Range` parsing, and producers that stream a file.

Over plain TCP the bytes go from the page cache to the socket with sendfile(2)
(`SendfileProducer`); over TLS, or any transport that is not a bare socket,
`FileProducer` reads them into memory and writes them through Twisted.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Any, BinaryIO

import attrs
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IPushProducer,
    IReactorFDSet,
    ISSLTransport,
    IWriteDescriptor,
)
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from zope.interface import implementer

from ocireg.api.errors import RANGE_NOT_SATISFIABLE
from ocireg.errors import RegistryError

#: Bytes read from the file per write to the transport.
CHUNK = 1024 * 1024
#: The most bytes one send() of a blob download may take.
SEND_SIZE = 4 * 1024 * 1024
#: Below this, reading into memory costs less than sendfile's extra reactor turn
#: (the headers must leave Twisted's buffer before the body may bypass it).
SENDFILE_MIN = 256 * 1024
#: The most bytes one sendfile() call is asked for; the kernel takes what fits.
SENDFILE_SIZE = 4 * 1024 * 1024
#: The most bytes sent in one reactor turn before other connections get theirs.
SENDFILE_TURN = 16 * 1024 * 1024

_log = Logger()

#: ASCII digits (RFC 9110's DIGIT), and no more than 19: a longer offset is past
#: any blob's end, and int() refuses one past 4300 digits. A range that does not
#: match is ignored, as RFC 9110 allows.
_RANGE = re.compile(r"^bytes=([0-9]{0,19})-([0-9]{0,19})$")


@attrs.frozen
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range of a `Range: bytes=…` header within a blob of `size` bytes.

    None means serve the whole blob: no header, or one we ignore as RFC 9110
    allows (malformed, or several ranges). A range that lies wholly past the
    end answers 416.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None
    else:
        suffix = int(last)
        if suffix == 0:
            raise _unsatisfiable(size)
        start, end = max(size - suffix, 0), size - 1
    if start >= size:
        raise _unsatisfiable(size)
    return ByteRange(start, end)


def _unsatisfiable(size: int) -> RegistryError:
    return RegistryError(
        RANGE_NOT_SATISFIABLE,
        f"requested range is not within the blob's {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )


@implementer(IPushProducer)
class FileProducer:
    """Writes `length` bytes of `f` from `start` to `request`, as the transport takes them."""

    def __init__(self, f: BinaryIO, start: int, length: int, request: IRequest) -> None:
        self._file = f
        self._remaining = length
        self._request = request
        self._paused = False
        self._done: Deferred = Deferred()
        f.seek(start)

    def send(self) -> Deferred:
        """Start sending; a Deferred that fires when everything is written or the client left."""
        transport = getattr(self._request, "transport", None)
        if _sendfile_capable(self._request, transport, self._file, self._remaining):
            # The zero-copy path: no read into memory, no Twisted buffer, no copy.
            return SendfileProducer(
                self._file, self._file.tell(), self._remaining, self._request, transport
            ).send()
        if transport is not None and hasattr(transport, "SEND_LIMIT"):
            # A TCP transport: fewer, larger send() calls, and room for a few chunks
            # before it pauses us (its defaults, 128 KiB and 64 KiB, cost a reactor
            # round trip per chunk). Only for this connection, which keeps them.
            transport.SEND_LIMIT = SEND_SIZE
            transport.bufferSize = max(transport.bufferSize, 2 * CHUNK)
        self._request.registerProducer(self, True)
        self._request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self.resumeProducing()
        return self._done

    def resumeProducing(self) -> None:
        self._paused = False
        while not self._paused and self._remaining > 0 and not self._done.called:
            chunk = self._file.read(min(CHUNK, self._remaining))
            if not chunk:
                self._finish(OSError("blob file is shorter than its recorded size"))
                return
            self._remaining -= len(chunk)
            self._request.write(chunk)
        if self._remaining == 0:
            self._finish(None)

    def pauseProducing(self) -> None:
        self._paused = True

    def stopProducing(self) -> None:
        self._remaining = 0
        self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        if self._done.called:
            return
        self._file.close()
        if getattr(self._request, "channel", None) is not None:
            self._request.unregisterProducer()
        if error is None:
            self._done.callback(None)
        else:
            self._done.errback(error)


def _sendfile_capable(request: IRequest, transport: Any, f: BinaryIO, length: int) -> bool:
    """Whether `length` bytes of `f` may go to `transport`'s socket by sendfile(2)."""
    if length < SENDFILE_MIN or not hasattr(os, "sendfile"):
        return False
    # Only a bare socket: through TLS (a wrapping protocol, or a tcp transport
    # after startTLS) the bytes must be encrypted in user space.
    if not isinstance(transport, tcp.Connection) or ISSLTransport.providedBy(transport):
        return False
    if getattr(transport, "TLS", False) or not IReactorFDSet.providedBy(transport.reactor):
        return False
    # The body goes around Request.write: it must not be chunked, so the length
    # the client is told must be exactly what we send.
    if request.responseHeaders.getRawHeaders(b"Content-Length") != [str(length).encode()]:
        return False
    try:
        f.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    return True


@implementer(IWriteDescriptor)
class _Writable:
    """Tells a `SendfileProducer` when its socket can take more bytes.

    It watches a duplicate of the connection's descriptor: the reactor keys its
    watch on the descriptor number, and the connection's own number is already
    watched by its transport (for reading, and for writing Twisted's buffer).
    """

    def __init__(self, fd: int, producer: SendfileProducer) -> None:
        self._fd = fd
        self._producer = producer

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "SendfileProducer"

    def doWrite(self) -> None:
        self._producer._pump()

    def connectionLost(self, reason: Any) -> None:
        # The reactor saw an error or hang-up on the socket.
        self._producer._lost()


@implementer(IPushProducer)
class SendfileProducer:
    """Sends `length` bytes of `f` from `start` to a plain TCP request with sendfile(2).

    The response headers go through Twisted first. While this producer is
    registered the transport's buffer limit is 0, so their write pauses it, and
    the transport resumes it only once it has sent everything it buffered: only
    then can the body go to the socket behind Twisted's back without the two
    interleaving. From there the socket is non-blocking, sendfile sends what the
    kernel takes, and `_Writable` calls back when it can take more.
    """

    def __init__(
        self, f: BinaryIO, start: int, length: int, request: IRequest, transport: Any
    ) -> None:
        self._file = f
        self._file_fd = f.fileno()
        self._offset = start
        self._remaining = length
        self._request = request
        self._transport = transport
        self._reactor = transport.reactor
        self._buffer_size: int = transport.bufferSize
        self._paused = False
        self._writer: _Writable | None = None
        self._done: Deferred = Deferred()

    def send(self) -> Deferred:
        """Start sending; a Deferred that fires when everything is written or the client left."""
        self._request.registerProducer(self, True)
        self._request.notifyFinish().addErrback(lambda _: self.stopProducing())
        if self._done.called:
            return self._done
        self._transport.bufferSize = 0
        self._request.write(b"")  # the status line and headers, into Twisted's buffer
        if not self._paused and not self._done.called:
            # The transport did not take the headers (it is closing): nothing
            # will resume us, and the response cannot be completed.
            self._transport.abortConnection()
        return self._done

    def pauseProducing(self) -> None:
        self._paused = True
        self._unwatch()

    def resumeProducing(self) -> None:
        # The transport resumes us with its buffer empty (see the class doc).
        self._paused = False
        if self._done.called:
            return
        if self._writer is None:
            self._writer = _Writable(os.dup(self._transport.fileno()), self)
            self._reactor.addWriter(self._writer)
        self._pump()

    def stopProducing(self) -> None:
        self._remaining = 0
        self._finish(None)

    def _pump(self) -> None:
        """Send until the socket is full or this turn's share is used up."""
        sent = 0
        while not self._paused and not self._done.called and self._remaining > 0:
            if sent >= SENDFILE_TURN:
                return  # the writer is still watched: the next turn continues
            try:
                n = os.sendfile(
                    self._transport.fileno(), self._file_fd, self._offset,
                    min(SENDFILE_SIZE, self._remaining),
                )
            except BlockingIOError:
                return  # the kernel's buffer is full: the writer calls back
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    _log.failure("sendfile of a blob download failed")
                self._lost()
                return
            if n == 0:
                self._transport.abortConnection()  # the client was promised more bytes
                self._finish(OSError("blob file is shorter than its recorded size"))
                return
            self._offset += n
            self._remaining -= n
            sent += n
            # The access log and metrics count what Request.write would have.
            self._request.sentLength += n
        if self._remaining == 0 and not self._done.called:
            self._finish(None)

    def _lost(self) -> None:
        """The socket failed: drop the connection; its loss stops us (notifyFinish)."""
        self._unwatch()
        self._transport.abortConnection()

    def _unwatch(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._reactor.removeWriter(writer)
            os.close(writer.fileno())

    def _finish(self, error: BaseException | None) -> None:
        if self._done.called:
            return
        self._unwatch()
        self._file.close()
        self._transport.bufferSize = self._buffer_size
        if getattr(self._request, "channel", None) is not None:
            self._request.unregisterProducer()
        if error is None:
            self._done.callback(None)
        else:
            self._done.errback(error)
