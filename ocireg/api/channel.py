"""The HTTP channel under the registry's site: one client connection.

`RegistryChannel` answers a TLS handshake on a plain-HTTP port at once: Go
clients (docker, podman, skopeo) try TLS first and would otherwise wait out
a 10-second timeout before falling back to HTTP. It closes a connection
whose request line and headers take longer than the header timeout: the
idle timeout alone is reset by every byte, so a client sending one byte
every few seconds would hold the connection for ever. It hands each request
its request line as soon as it is read, so that the body path knows the
route before the body (twisted.web keeps it to itself until then).
`Refused` is what a connection past the site's limits gets: a 503.
"""

from __future__ import annotations

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.http import HTTPChannel

from ocireg.api.errors import early_answer
from ocireg.errors import UNAVAILABLE, RegistryError

_log = Logger()

#: The first byte of a TLS handshake record.
_TLS_HANDSHAKE = 0x16

#: Seconds a client refused for the connection limits is asked to wait.
RETRY_AFTER = 1


def _busy_response() -> bytes:
    _, body = early_answer(
        RegistryError(UNAVAILABLE, "too many connections; try again shortly"), management=False
    )
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Retry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
        % (RETRY_AFTER, len(body), body)
    )


class Refused(Protocol):
    """A connection past the limits: answered 503 at once, and closed."""

    def connectionMade(self) -> None:
        self.transport.write(_busy_response())
        self.transport.loseConnection()


def client_of(address: IAddress | None) -> str | None:
    """The host a connection comes from; None for a UNIX socket."""
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else None


class RegistryChannel(HTTPChannel):
    _first_byte_seen = False
    #: Set by the site: where this connection comes from, and the header timeout.
    client: str | None = None
    header_timeout: float = 0
    #: Between requests: the next byte starts a request line, and the header clock.
    _awaiting_request = True
    #: A request's first byte has arrived, its headers have not all.
    _in_headers = False
    _header_call = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.site.connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        if not self._first_byte_seen and data:
            self._first_byte_seen = True
            if data[0] == _TLS_HANDSHAKE:
                self.transport.write(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                    b"Connection: close\r\nContent-Length: 39\r\n\r\n"
                    b"this port speaks plain HTTP, not HTTPS\n"
                )
                self.transport.loseConnection()
                return
        if self._awaiting_request and data:
            self._request_begins()
        super().dataReceived(data)
        # Most requests' headers come in one read: a timer only for those that do not.
        if self._in_headers and self._header_call is None and self.header_timeout:
            self._header_call = self.callLater(self.header_timeout, self._headers_too_slow)

    def lineReceived(self, line: bytes) -> None:
        # A request that ended while its read was parsed: the next one begins
        # in the same read, without another call of dataReceived.
        if self._awaiting_request:
            self._request_begins()
        requests = len(self.requests)
        super().lineReceived(line)
        if len(self.requests) > requests and self.transport is not None:
            # twisted.web makes each request as it parses the request's first
            # line, and keeps that line's parts private until the body is in.
            # tests/test_body_routes.py fails if it stops doing so.
            self.requests[-1].request_line_received(line)

    def _request_begins(self) -> None:
        self._awaiting_request = False
        self._in_headers = True

    def allHeadersReceived(self) -> None:
        self._in_headers = False
        self._stop_header_timer()
        super().allHeadersReceived()

    def requestDone(self, request) -> None:
        # Before the parent's: it hands over the next pipelined request's bytes at once.
        self._awaiting_request = True
        super().requestDone(request)

    def connectionLost(self, reason) -> None:
        self._stop_header_timer()
        self.site.connection_lost(self)
        super().connectionLost(reason)

    def _stop_header_timer(self) -> None:
        if self._header_call is not None and self._header_call.active():
            self._header_call.cancel()
        self._header_call = None

    def _headers_too_slow(self) -> None:
        self._header_call = None
        self.site.header_timeouts += 1
        _log.info("closing the connection of {client}: its request headers took over "
                  "{timeout} s", client=self.client, timeout=self.header_timeout)
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        # Closes, and aborts if the client does not let go.
        self.timeoutConnection()
