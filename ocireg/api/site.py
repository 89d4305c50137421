"""The twisted.web pieces under the Klein app: site, request and channel.

`RegistryRequest` hands each body to `streaming.route_body` instead of
spooling it, and marks every response with the registry API version.
`RegistryChannel` answers a TLS handshake on a plain-HTTP port at once:
Go clients (docker, podman, skopeo) try TLS first and would otherwise wait
out a 10-second timeout before falling back to HTTP.
"""

from __future__ import annotations

from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from ocireg.api.streaming import UploadBody, route_body
from ocireg.registry import Registry

#: The first byte of a TLS handshake record.
_TLS_HANDSHAKE = 0x16


class RegistryRequest(Request):
    _body_complete = False

    def gotLength(self, length: int | None) -> None:
        # The request line is only known from the channel's private fields
        # here; tests/test_streaming.py guards that this keeps working.
        channel = self.channel
        self.content = route_body(
            channel.site.registry,
            channel._command,
            channel._path,
            self.requestHeaders,
            length,
            channel.transport,
        )

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._body_complete = True
        if isinstance(self.content, UploadBody):
            self.content.complete = True
        super().requestReceived(command, path, version)

    def connectionLost(self, reason) -> None:
        if not self._body_complete and isinstance(self.content, UploadBody):
            self.content.connection_lost()
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

    def __init__(self, resource: IResource, registry: Registry, **kwargs) -> None:
        super().__init__(resource, requestFactory=RegistryRequest, **kwargs)
        self.registry = registry
