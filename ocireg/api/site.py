"""The twisted.web pieces under the Klein apps: the site and its requests.

`RegistryRequest` writes its body into the sink its route declares
(`ocireg.api.streaming`) instead of spooling it, answers a request refused
before its body is read (`answer_early`), and marks every response with the
registry API version. `RegistrySite` keeps the requests in flight, so a stop
can let them finish (or cut them off after a timeout), tells its observers
(the access log, the metrics) about each one as it ends, and refuses
connections past its `ClientLimits` with a 503. The connection itself is
`ocireg.api.channel`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import attrs
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from ocireg.api.auth import RequestAccess
from ocireg.api.channel import Refused, RegistryChannel, client_of
from ocireg.api.errors import early_answer, error_headers
from ocireg.api.observe import RequestObserver, record_of
from ocireg.api.sinks import DiscardedBody, UploadBody
from ocireg.api.streaming import Arrival, BodyRoutes, BodySink, discarded
from ocireg.auth.authoriser import OpenAuthoriser
from ocireg.auth.permissions import PUSH
from ocireg.domain.registry_operations import RegistryOperations
from ocireg.errors import RegistryError
from ocireg.manifest import MAX_MANIFEST_SIZE

_log = Logger()

#: A request answered before its body was read may go on sending that body (read
#: and discarded, so that the client reads the answer rather than a reset
#: connection) for this many seconds and bytes; then its connection is closed.
DRAIN_TIMEOUT = 10.0
DRAIN_LIMIT = MAX_MANIFEST_SIZE


class UnbrandedRequest(Request):
    """A request whose response does not name the server's software and version.

    twisted.web sets `Server: TwistedWeb/<version>` as it starts processing;
    it goes here, before the headers are written, since a version on the wire
    only helps whoever looks for a vulnerable one.
    """

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            self.responseHeaders.removeHeader(b"server")
        super().write(data)


class RegistryRequest(UnbrandedRequest):
    _body_complete = False
    #: Body bytes received so far.
    received = 0
    #: Where the body goes, from the headers on: the sink its route declares.
    body: BodySink | None = None
    #: Fires once a cut-off upload has kept the bytes it received.
    kept: Deferred | None = None
    #: The body length the headers announced (None: chunked).
    _length: int | None = None
    #: Body bytes received when the request was answered early (None: it was not).
    _answered_at: int | None = None
    _drain_call = None

    def request_line_received(self, line: bytes) -> None:
        """The channel read this request's first line (and twisted.web accepted it)."""
        parts = line.split(b" ")
        if len(parts) == 3:
            # Known now, so that the body finds its route, and a request cut off
            # mid-body is logged with them; requestReceived sets them again.
            self.method, self.uri = parts[0], parts[1]

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        site = channel.site
        self._length = length
        factory, values, query = site.bodies.find(self.method, self.uri)
        if factory is discarded:
            # Most requests (pulls): nothing to build for a body nobody reads.
            self.body = self.content = DiscardedBody()
        else:
            self.body = self.content = factory(Arrival(
                site.registry, values, query, self.requestHeaders, length, channel.transport,
                # Checked before a byte of the body is kept.
                _BodyGuard(site.access, self), self.answer_early, site.allowance(channel.client),
            ))
        site.request_started(self, isinstance(self.body, UploadBody))

    def handleContentChunk(self, data: bytes) -> None:
        self.received += len(data)
        super().handleContentChunk(data)
        if self._answered_at is not None and self.received - self._answered_at > DRAIN_LIMIT:
            self._close()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._body_complete = True
        if self.body is not None:
            self.body.complete = True
        super().requestReceived(command, path, version)

    def connectionLost(self, reason) -> None:
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        if not self._body_complete and isinstance(self.body, UploadBody):
            self.kept = self.body.connection_lost()
        super().connectionLost(reason)

    def process(self) -> None:
        if self._answered_at is not None:
            # Answered before its body was in; the body is drained, nothing is left to say.
            self._close()
            return
        self.setHeader(b"Docker-Distribution-API-Version", b"registry/2.0")
        super().process()

    def answer_early(self, error: RegistryError) -> None:
        """Refuse this request before its body is in: answer `error` now, then close.

        The rest of the body, up to `DRAIN_LIMIT` bytes and `DRAIN_TIMEOUT`
        seconds, is read and discarded first. Once the body is in (the
        handler answers then), this does nothing.
        """
        channel = self.channel
        if (self._body_complete or self._answered_at is not None or channel is None
                or channel.transport is None):
            return
        self._answered_at = self.received
        channel.site.answered_early += 1
        # Sent after this answer, a 100 Continue would invite the body for nothing.
        self.requestHeaders.removeHeader(b"expect")
        status, body = early_answer(error, management=self.uri.startswith(b"/api/"))
        self.setResponseCode(status)
        headers = Headers({
            b"Content-Type": [b"application/json"],
            b"Content-Length": [str(len(body)).encode()],
            b"Connection": [b"close"],
            b"Docker-Distribution-API-Version": [b"registry/2.0"],
        })
        for key, value in error_headers(error).items():
            headers.setRawHeaders(key, [value])
        channel.persistent = False
        channel.writeHeaders(
            b"HTTP/1.1", str(status).encode(), RESPONSES.get(status, b"Error"),
            headers,
        )
        channel.write(body)
        self.sentLength = len(body)
        if self._length is not None and self._length - self.received > DRAIN_LIMIT:
            self._close()
        else:
            self._drain_call = channel.site.reactor.callLater(DRAIN_TIMEOUT, self._close)

    def _close(self) -> None:
        if self.channel is not None and self.channel.transport is not None:
            self.channel.loseConnection()


class _Allowance:
    """A client's share of `kept`: at most `limit` bytes."""

    def __init__(self, kept: Counter[str], client: str, limit: int) -> None:
        self._kept = kept
        self._client = client
        self._limit = limit

    def take(self, size: int) -> bool:
        if self._kept[self._client] + size > self._limit:
            return False
        self._kept[self._client] += size
        return True

    def give(self, size: int) -> None:
        self._kept[self._client] -= size
        if self._kept[self._client] <= 0:
            del self._kept[self._client]


class _BodyGuard:
    """The `streaming.UploadGuard` of one request: what it may send, asked of `access`."""

    def __init__(self, access: RequestAccess, request: IRequest) -> None:
        self._access = access
        self._request = request
        self._upload = access.upload_guard(request)

    async def may_push(self, name: str) -> str | None:
        return await self._upload.may_push(name)

    async def may_write(self, name: str, uuid: str) -> None:
        await self._upload.may_write(name, uuid)

    async def client(self) -> str | None:
        return await self._upload.client()

    async def may_put_manifest(self, name: str) -> None:
        await self._access.require(self._request, name, PUSH)

    async def may_manage(self) -> None:
        if self._access.enabled:
            await self._access.require_admin(self._request)


@attrs.frozen
class ClientLimits:
    """What a site allows its clients: connections, time for headers, bodies kept."""

    #: Open connections in all...
    total: int = 1024
    #: ...and from one client address (a host; UNIX sockets count in the total only).
    per_client: int = 128
    #: Seconds from a request's first byte to the end of its headers; 0: no limit.
    header_timeout: float = 30.0
    #: Bytes of request bodies (manifests, forms) one client address may have kept at once.
    client_buffer: int = 16 * 1024 * 1024


DEFAULT_LIMITS = ClientLimits()

class RegistrySite(Site):
    """A site serving `resource`, each request's body going where `bodies` says: upload
    bodies into `registry`'s blob store."""

    protocol = RegistryChannel
    requestFactory = RegistryRequest

    def __init__(
        self,
        resource: IResource,
        registry: RegistryOperations,
        bodies: BodyRoutes,
        observers: Iterable[RequestObserver] = (),
        access: RequestAccess | None = None,
        limits: ClientLimits = DEFAULT_LIMITS,
        **kwargs,
    ) -> None:
        super().__init__(resource, requestFactory=RegistryRequest, **kwargs)
        self.registry = registry
        self.bodies = bodies
        self.access = access or RequestAccess(OpenAuthoriser())
        self.limits = limits
        #: Open connections, in all and by client address.
        self.connections = 0
        self._by_client: Counter[str] = Counter()
        #: Bytes of request bodies kept, by client address.
        self._kept: Counter[str] = Counter()
        #: Since start: connections refused past the limits, connections whose
        #: headers took too long, requests answered before their body was read.
        self.refused = 0
        self.header_timeouts = 0
        self.answered_early = 0
        self._observers = tuple(observers)
        #: Each request in flight, and a Deferred that fires once it is over.
        self._in_flight: dict[RegistryRequest, Deferred] = {}
        #: Set by `drain`: connections close after their current request.
        self.stopping = False

    def buildProtocol(self, addr: IAddress) -> Protocol:
        client = client_of(addr)
        if self.connections >= self.limits.total or (
            client is not None and self._by_client[client] >= self.limits.per_client
        ):
            self.refused += 1
            return Refused()
        channel = super().buildProtocol(addr)
        channel.client = client
        channel.header_timeout = self.limits.header_timeout
        return channel

    def connection_made(self, channel: RegistryChannel) -> None:
        self.connections += 1
        if channel.client is not None:
            self._by_client[channel.client] += 1

    def connection_lost(self, channel: RegistryChannel) -> None:
        self.connections -= 1
        if channel.client is not None:
            self._by_client[channel.client] -= 1
            if not self._by_client[channel.client]:
                del self._by_client[channel.client]

    def figures(self) -> list[tuple[str, str, float]]:
        """(name, help, value) of the connections and what the limits refused, for /metrics."""
        return [
            ("ocireg_connections_open", "Open connections on the API endpoints.",
             self.connections),
            ("ocireg_connections_refused_total", "Connections refused past max_connections or "
             "max_client_connections.", self.refused),
            ("ocireg_header_timeouts_total", "Connections closed because a request's headers "
             "took over header_timeout.", self.header_timeouts),
            ("ocireg_requests_refused_before_body_total", "Requests refused (401, 403, 413, 429) "
             "before their body was read.", self.answered_early),
        ]

    def allowance(self, client: str | None) -> _Allowance:
        """The `streaming.Allowance` of `client` (None: UNIX socket clients, all together)."""
        return _Allowance(self._kept, client or "", self.limits.client_buffer)

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
