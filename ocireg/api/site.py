"""The twisted.web pieces under the Klein app: site, request and channel.

`RegistryRequest` hands each body to `streaming.route_body` instead of
spooling it, and marks every response with the registry API version.
`RegistrySite` keeps the requests in flight, so a stop can let them finish
(or cut them off after a timeout), and tells its observers (the access log,
the metrics) about each one as it ends.
`RegistryChannel` answers a TLS handshake on a plain-HTTP port at once:
Go clients (docker, podman, skopeo) try TLS first and would otherwise wait
out a 10-second timeout before falling back to HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from ocireg.api.auth import RequestAccess
from ocireg.api.observe import RequestObserver, record_of
from ocireg.api.streaming import UploadBody, route_body
from ocireg.auth.authoriser import OpenAuthoriser
from ocireg.registry import Registry

_log = Logger()

#: The first byte of a TLS handshake record.
_TLS_HANDSHAKE = 0x16


class RegistryRequest(Request):
    _body_complete = False
    #: Body bytes received so far.
    received = 0
    #: Fires once a cut-off upload has kept the bytes it received.
    kept: Deferred | None = None

    def gotLength(self, length: int | None) -> None:
        # The request line is only known from the channel's private fields
        # here; tests/test_streaming.py guards that this keeps working.
        channel = self.channel
        # Known now, so that a request cut off mid-body is logged with them;
        # requestReceived sets them again once the body is in.
        self.method, self.uri = channel._command, channel._path
        self.content = route_body(
            channel.site.registry,
            channel._command,
            channel._path,
            self.requestHeaders,
            length,
            channel.transport,
            # Checked before a byte of an upload body is kept.
            channel.site.access.upload_guard(self),
        )
        channel.site.request_started(self, isinstance(self.content, UploadBody))

    def handleContentChunk(self, data: bytes) -> None:
        self.received += len(data)
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._body_complete = True
        if isinstance(self.content, UploadBody):
            self.content.complete = True
        super().requestReceived(command, path, version)

    def connectionLost(self, reason) -> None:
        if not self._body_complete and isinstance(self.content, UploadBody):
            self.kept = self.content.connection_lost()
        super().connectionLost(reason)

    def process(self) -> None:
        self.setHeader(b"Docker-Distribution-API-Version", b"registry/2.0")
        super().process()


class RegistryChannel(HTTPChannel):
    _first_byte_seen = False

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
        super().dataReceived(data)


class RegistrySite(Site):
    """A site serving `resource`, whose upload bodies stream into `registry`'s blob store."""

    protocol = RegistryChannel
    requestFactory = RegistryRequest

    def __init__(
        self,
        resource: IResource,
        registry: Registry,
        observers: Iterable[RequestObserver] = (),
        access: RequestAccess | None = None,
        **kwargs,
    ) -> None:
        super().__init__(resource, requestFactory=RegistryRequest, **kwargs)
        self.registry = registry
        self.access = access or RequestAccess(OpenAuthoriser())
        self._observers = tuple(observers)
        #: Each request in flight, and a Deferred that fires once it is over.
        self._in_flight: dict[RegistryRequest, Deferred] = {}
        #: Set by `drain`: connections close after their current request.
        self.stopping = False

    def log(self, request: Request) -> None:
        # The access log is an observer of the requests (ocireg.requestlog),
        # with their route, repository and duration; twisted.web's line would repeat it.
        pass

    def request_started(self, request: RegistryRequest, upload: bool) -> None:
        """`request`'s headers are in; it is in flight until it finishes or its connection drops."""
        started = self.reactor.seconds()
        if self.stopping:
            request.channel.persistent = False
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        if upload:
            self._tell("upload_started")
        over: Deferred = Deferred()
        self._in_flight[request] = over

        def done(result: object) -> None:
            record = record_of(
                request,
                self.reactor.seconds() - started,
                request.received,
                completed=not isinstance(result, Failure),
                upload=upload,
            )
            self._tell("request_done", record)
            kept = request.kept if request.kept is not None else succeed(None)
            kept.addBoth(lambda _: self._over(request, over))

        request.notifyFinish().addBoth(done)

    def _over(self, request: RegistryRequest, over: Deferred) -> None:
        del self._in_flight[request]
        over.callback(None)

    def _tell(self, event: str, *args: object) -> None:
        for observer in self._observers:
            try:
                getattr(observer, event)(*args)
            except Exception:
                _log.failure("request observer {observer!r} failed", observer=observer)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def drain(self, timeout: float) -> int:
        """Let the requests in flight finish for up to `timeout` seconds, then cut off the rest.

        Connections close once their current request is over. Returns how
        many requests were cut off; returns once they have kept what they
        received.
        """
        self.stopping = True
        if self._in_flight:
            finished = _within(
                DeferredList(list(self._in_flight.values())), timeout, self.reactor
            )
            await finished
        cut_off = list(self._in_flight.items())
        for request, _ in cut_off:
            transport = request.channel.transport if request.channel is not None else None
            if transport is not None:
                transport.abortConnection()
        if cut_off:
            await DeferredList([over for _, over in cut_off])
        return len(cut_off)


def _within(d: Deferred, seconds: float, clock) -> Deferred:
    """A Deferred that fires when `d` does or after `seconds`, whichever is first; `d` goes on."""
    result: Deferred = Deferred()

    def fire(_: object = None) -> None:
        if not result.called:
            result.callback(None)

    call = clock.callLater(seconds, fire)

    def fired(value: object) -> object:
        if call.active():
            call.cancel()
        fire()
        return value

    d.addBoth(fired)
    return result
