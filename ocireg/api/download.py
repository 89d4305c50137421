"""Blob downloads: `Range` parsing and a push producer that streams a file."""

from __future__ import annotations

import re
from typing import BinaryIO

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.web.iweb import IRequest
from zope.interface import implementer

from ocireg.errors import RANGE_INVALID, RegistryError

#: Bytes read from the file per write to the transport.
CHUNK = 1024 * 1024
#: The most bytes one send() of a blob download may take.
SEND_SIZE = 4 * 1024 * 1024

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


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
        RANGE_INVALID,
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
