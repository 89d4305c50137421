"""The request body path: which sink each route's body goes into, and how handlers get it.

A route that takes a body declares its sink beside itself, in its app's
`BodyTable` (`ocireg.api.routing`): `chunk_body`, `last_chunk_body` and
`monolithic_body` stream a blob upload, `manifest_body` keeps a manifest
once the caller may push it, `admin_body` keeps a management document once
the caller is an admin. As soon as a request's headers are in,
`RegistryRequest` asks `BodyRoutes.sink` for its sink, which the route's
table finds with the app's own URL map. A sink's check is the route's
authorisation: it runs once, before a byte of the body is kept, and the
handler gets its outcome with the body, through `upload_of` or `kept_body`,
never by looking at `request.content`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote_to_bytes

import attrs
from twisted.internet.interfaces import IPushProducer
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest

from ocireg.api.routing import BodyTable
from ocireg.api.sinks import (
    Allowance,
    BufferedBody,
    DiscardedBody,
    GuardedBody,
    Refuse,
    RefusedBody,
    UploadBody,
)
from ocireg.api.uploadheaders import check_content_range
from ocireg.domain.registry_operations import RegistryOperations
from ocireg.errors import BLOB_UPLOAD_INVALID, DIGEST_INVALID, RegistryError
from ocireg.interfaces import IUploadFile
from ocireg.manifest import MAX_MANIFEST_SIZE

#: The largest body a request outside the registry and management APIs (the
#: token endpoint's form) may send.
SMALL_BODY_LIMIT = 64 * 1024

#: ASCII digits, no more than 19 (past any upload's size, and int() refuses past 4300).
_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?([0-9]{1,19})-([0-9]{1,19})(?:/(?:[0-9]+|\*))?$")

#: Whatever a request's body is written into, as twisted.web writes its `content`.
BodySink = UploadBody | RefusedBody | BufferedBody


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


@attrs.frozen
class Arrival:
    """What the body path knows of a request once its headers are in."""

    registry: RegistryOperations
    #: The values the route takes from the path (`name`, `uuid`).
    values: Mapping[str, Any]
    query: Mapping[str, list[str]]
    headers: Headers
    #: What Content-Length announced; None for a chunked body.
    length: int | None
    transport: IPushProducer
    guard: UploadGuard
    refuse: Refuse
    allowance: Allowance


class SinkFactory(Protocol):
    def __call__(self, arrival: Arrival) -> BodySink: ...


# The sinks routes declare.


def discarded(arrival: Arrival) -> BodySink:
    """For a route that reads no body: it is counted, not kept."""
    return DiscardedBody()


def small_body(arrival: Arrival) -> BodySink:
    """For a path outside the registry and management APIs (the token form): kept up to 64 KiB."""
    return GuardedBody(None, SMALL_BODY_LIMIT, arrival.length, arrival.transport, arrival.refuse,
                       arrival.allowance)


def manifest_body(arrival: Arrival) -> BodySink:
    """A manifest, kept once the caller may push to the route's repository."""
    name = arrival.values["name"]
    return GuardedBody(lambda: arrival.guard.may_put_manifest(name), MAX_MANIFEST_SIZE,
                       arrival.length, arrival.transport, arrival.refuse, arrival.allowance)


def admin_body(arrival: Arrival) -> BodySink:
    """A management API document, kept once the caller is known to be an admin."""
    return GuardedBody(arrival.guard.may_manage, MAX_MANIFEST_SIZE, arrival.length,
                       arrival.transport, arrival.refuse, arrival.allowance)


def monolithic_body(arrival: Arrival) -> BodySink:
    """A `POST …/uploads/?digest=` body: the whole blob, into a new upload.

    With `mount`, or without `digest`, the POST opens a session (or mounts)
    and its body, if any, is not read.
    """
    if "digest" not in arrival.query or "mount" in arrival.query:
        return DiscardedBody()
    name, guard, registry = arrival.values["name"], arrival.guard, arrival.registry

    async def open_new() -> tuple[str, IUploadFile]:
        uuid = await guard.may_push(name)
        return await registry.new_upload_for_body(name, uuid, await guard.client())

    return UploadBody(open_new, arrival.transport, registry.release_upload)


def chunk_body(arrival: Arrival) -> BodySink:
    """A `PATCH` of an upload: a chunk, appended where its `Content-Range` says."""
    return _chunk(arrival, last=False)


def last_chunk_body(arrival: Arrival) -> BodySink:
    """The `PUT ?digest=` closing an upload, with its last chunk (often none)."""
    return _chunk(arrival, last=True)


def _chunk(arrival: Arrival, last: bool) -> BodySink:
    name, uuid = arrival.values["name"], arrival.values["uuid"]
    guard, registry = arrival.guard, arrival.registry

    def may_write() -> Any:
        return guard.may_write(name, uuid)

    content_range = arrival.headers.getRawHeaders(b"content-range")
    start = expected = None
    try:
        if content_range:
            start, end = parse_content_range(content_range[0].decode("latin-1"), arrival.length)
            expected = end - start + 1
        if last and not arrival.query.get("digest"):
            raise RegistryError(DIGEST_INVALID, "PUT of an upload needs ?digest=")
    except RegistryError as e:
        return RefusedBody(e, may_write)

    async def open_upload() -> tuple[str, IUploadFile]:
        await may_write()
        return uuid, await registry.open_upload(name, uuid, start, arrival.length)

    return UploadBody(open_upload, arrival.transport, registry.release_upload, expected)


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


# Finding a request's sink.


class BodyRoutes:
    """The sink of each request: its route's, from the table of the API its path is under.

    A path under no table's prefix (the token endpoint's) takes `small_body`.
    """

    def __init__(self, tables: Sequence[BodyTable[SinkFactory]]) -> None:
        self._tables = tuple(tables)

    def find(
        self, method: bytes, target: bytes
    ) -> tuple[SinkFactory, Mapping[str, Any], Mapping[str, list[str]]]:
        """The sink factory for the body of the request `method target`, with the values its
        route takes from the path and the query's arguments."""
        raw_path, _, query = target.partition(b"?")
        try:
            # As Klein will see it: percent-decoded, UTF-8.
            path = (unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path).decode("utf-8")
        except UnicodeDecodeError:
            path = raw_path.decode("latin-1")
        for table in self._tables:
            if path.startswith(table.under):
                factory, values = table.find(method.decode("latin-1"), path)
                break
        else:
            factory, values = small_body, {}
        return factory, values, parse_qs(query.decode("latin-1")) if query else {}


# How handlers get their body.


def _sink(request: IRequest) -> BodySink | None:
    # Set by RegistryRequest; a request served by another site has none.
    return getattr(request, "body", None)


def upload_of(request: IRequest) -> UploadBody | RefusedBody:
    """The upload a `PATCH` or `PUT` of an upload streamed its body into."""
    sink = _sink(request)
    if not isinstance(sink, UploadBody | RefusedBody):
        raise RegistryError(BLOB_UPLOAD_INVALID, "malformed upload request")
    return sink


def monolithic_upload_of(request: IRequest) -> UploadBody | None:
    """The upload a `POST …/uploads/?digest=` streamed its body into; None for another POST."""
    sink = _sink(request)
    return sink if isinstance(sink, UploadBody) else None


async def kept_body(request: IRequest, authorised_elsewhere: bool = False) -> bytes:
    """The body its route's sink kept, once that sink's check allowed the caller.

    The check's refusal is raised here, as is 413 for a body past the sink's
    limit. A request not served by a RegistrySite has no sink, so no check
    ran: its body is refused, unless its route is `authorised_elsewhere`
    (the management API by `AdminOnly`, the token endpoint by the form's
    credentials), and then it is what twisted.web kept.
    """
    sink = _sink(request)
    if isinstance(sink, GuardedBody):
        return await sink.kept()
    if sink is None and authorised_elsewhere:
        return request.content.read()
    raise RegistryError(BLOB_UPLOAD_INVALID, "malformed request")
