"""What a finished request was, as the access log and the metrics see it.

`RegistryRequest` builds one `RequestRecord` when its response is complete or
its connection is lost, and hands it to the site's `RequestObserver`s. The
route is the Klein route template that matched (`/v2/<path:name>/blobs/<digest>`),
found again from the mapper Klein left on the request, so metrics labelled by
it stay bounded whatever paths clients send.
"""

from __future__ import annotations

from typing import Protocol

import attrs
from klein.interfaces import IKleinRequest
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

#: The longest path kept in a record; the rest of a hostile path is cut.
MAX_PATH = 2000
#: The longest User-Agent or Referer kept in a record.
MAX_HEADER = 500


@attrs.frozen
class RequestRecord:
    method: str
    path: str
    #: The route template that matched, or None when no route did.
    route: str | None
    status: int
    #: Body bytes received and sent.
    received: int
    sent: int
    #: Seconds from the request's first line to its end.
    duration: float
    client: str
    user: str | None
    #: The repository name the route named, if any, and the manifest reference.
    repository: str | None
    reference: str | None
    #: False when the connection was lost before the response was complete.
    completed: bool
    #: Whether the body streamed into a blob upload.
    upload: bool
    #: The request line's protocol, and the client's User-Agent and Referer headers.
    protocol: str = "HTTP/1.1"
    user_agent: str | None = None
    referer: str | None = None


class RequestObserver(Protocol):
    def upload_started(self) -> None:
        """A request's body began to stream into a blob upload."""

    def request_done(self, record: RequestRecord) -> None:
        """A request finished, or its connection was lost."""


def _route(request: IRequest) -> tuple[str | None, dict]:
    mapper = getattr(IKleinRequest(request), "mapper", None)
    if mapper is None:
        return None, {}
    try:
        rule, arguments = mapper.match(return_rule=True)
    except (HTTPException, RequestRedirect):
        return None, {}
    return rule.rule, arguments


def _client(request: IRequest) -> str:
    host = getattr(request.getClientAddress(), "host", None)
    return host if isinstance(host, str) else "-"


def _header(request: IRequest, name: bytes) -> str | None:
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1")[:MAX_HEADER]


def record_of(
    request: IRequest, duration: float, received: int, completed: bool, upload: bool
) -> RequestRecord:
    """The record of `request`, which took `duration` seconds and received `received` bytes."""
    route, arguments = _route(request)
    # Who authenticated (a token names its user only inside); else Basic's user.
    user = getattr(request, "ocireg_user", None) or request.getUser().decode("utf-8", "replace")
    return RequestRecord(
        method=request.method.decode("latin-1"),
        path=request.uri.decode("latin-1")[:MAX_PATH],
        route=route,
        status=request.code,
        received=received,
        sent=request.sentLength,
        duration=max(duration, 0.0),
        client=_client(request),
        user=user or None,
        repository=arguments.get("name"),
        reference=arguments.get("reference"),
        completed=completed,
        upload=upload,
        protocol=request.clientproto.decode("latin-1")[:16],
        user_agent=_header(request, b"user-agent"),
        referer=_header(request, b"referer"),
    )
