"""The Klein routes of the registry API (`/v2/`): parse, call the registry, render."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes, urlencode

from klein.interfaces import IKleinRequest
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from ocireg.api import streaming
from ocireg.api.auth import RequestAccess
from ocireg.api.download import FileProducer, parse_range
from ocireg.api.errors import NO_SUCH_ENDPOINT, install_error_handlers, oci_error
from ocireg.api.params import whole_number
from ocireg.api.render import json_response
from ocireg.api.routing import BodyTable, remembering_klein
from ocireg.api.uploadheaders import upload_location, upload_range
from ocireg.auth.authoriser import OpenAuthoriser
from ocireg.auth.permissions import DELETE, PULL, PUSH
from ocireg.domain.registry_operations import RegistryOperations
from ocireg.errors import (
    BLOB_UNKNOWN,
    BLOB_UPLOAD_UNKNOWN,
    MANIFEST_UNKNOWN,
    UNSUPPORTED,
    ErrorCode,
    RegistryError,
)
from ocireg.manifest import OCI_INDEX

#: The most tags or repositories one listing returns.
MAX_PAGE = 10_000
#: The longest `n` taken (then cut to MAX_PAGE); a client asking for "all" may
#: send a 64-bit integer's largest value.
_MAX_N_DIGITS = 19

#: What a path that matches no route would be, by its shape: an upload
#: location, a blob or a manifest that cannot exist (an upload id or a
#: reference with a `/`, a name starting with `/`) is unknown, as it is when
#: it is well-formed and not there.
_UNMATCHED: tuple[tuple[re.Pattern, ErrorCode], ...] = (
    (re.compile("^/v2/.*/blobs/uploads/"), BLOB_UPLOAD_UNKNOWN),
    (re.compile("^/v2/.*/blobs/"), BLOB_UNKNOWN),
    (re.compile("^/v2/.*/manifests/"), MANIFEST_UNKNOWN),
)


def _arg(request: IRequest, name: str) -> str | None:
    values = request.args.get(name.encode())
    if not values:
        return None
    value = values[0].decode("utf-8", "replace")
    if "\x00" in value:
        # PostgreSQL keeps no NUL in text, and no name, tag or digest holds one.
        raise RegistryError(UNSUPPORTED, f"query parameter {name} holds a NUL character",
                            {"parameter": name})
    return value


def _set_headers(request: IRequest, headers: dict[str, str | int]) -> None:
    for key, value in headers.items():
        request.setHeader(key, str(value))


def _accepted_types(request: IRequest) -> set[str]:
    # Clients send Accept as several header lines: merge them all.
    raw = request.requestHeaders.getRawHeaders("accept") or []
    return {
        part.split(";", 1)[0].strip().lower() for line in raw for part in line.split(",")
    } - {""}


def _acceptable(request: IRequest, media_type: str) -> bool:
    accepted = _accepted_types(request)
    return not accepted or bool(accepted & {"*/*", "application/*", media_type})


def page_size(n: str | None) -> int | None:
    """The page size a listing's `n` asks for, cut to MAX_PAGE; None without one."""
    if n is None:
        return None
    wanted = whole_number(n, _MAX_N_DIGITS)
    if wanted is None:
        raise RegistryError(UNSUPPORTED, "n must be a whole number of ASCII digits",
                            {"n": n[:50]})
    return min(wanted, MAX_PAGE)


def _unmatched(path: str) -> ErrorCode:
    """The error for `path`, which names nothing the API serves."""
    return next((code for shape, code in _UNMATCHED if shape.match(path)), NO_SUCH_ENDPOINT)


def _unrouted(request: IRequest) -> ErrorCode:
    return _unmatched(IKleinRequest(request).mapper.path_info)


class _PathsThatNameSomething(Resource):
    """The Klein app, for paths that can name something: UTF-8, without NUL.

    Any other names nothing (no name, tag, digest or upload id has a NUL, and
    PostgreSQL keeps none in text): it is answered as a path that matches no
    route, where Klein would answer a non-UTF-8 one with a plain-text 400.
    """

    isLeaf = True

    def __init__(self, app: IResource) -> None:
        super().__init__()
        self._app = app

    def render(self, request: IRequest):
        raw = unquote_to_bytes(request.path)
        try:
            path = raw.decode("utf-8")
        except UnicodeDecodeError:
            path = raw.decode("utf-8", "replace")
        else:
            if "\x00" not in path:
                return self._app.render(request)
        error = RegistryError(_unmatched(path), "the path is not UTF-8 or holds a NUL character")
        return oci_error(request, error)


def _paginate(request: IRequest, path: str, items: list[str], limit: int | None) -> list[str]:
    """Cut `items` (fetched with one extra) to `limit`, with a Link to the next page."""
    if limit == 0:
        return []
    if limit is not None and len(items) > limit:
        items = items[:limit]
        query = urlencode({"n": limit, "last": items[-1]})
        request.setHeader("Link", f'<{path}?{query}>; rel="next"')
    return items


class RegistryAPI:
    """The `/v2/` routes, serving `registry`."""

    app = remembering_klein()
    # werkzeug would answer `//` in a name, or `/v2` without its slash, with
    # a redirect: for a push that could mean writing to another repository.
    # Match paths as they are; a malformed name is then NAME_INVALID or 404.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    install_error_handlers(app, oci_error, _unrouted)
    #: The sink of each route's request body; a route that declares none reads no body.
    bodies: BodyTable[streaming.SinkFactory] = BodyTable(app, "/v2/", streaming.discarded)

    def __init__(self, registry: RegistryOperations, access: RequestAccess | None = None) -> None:
        self._registry = registry
        #: Who may do what; with auth off, everyone everything.
        self._access = access or RequestAccess(OpenAuthoriser())

    def resource(self) -> IResource:
        return _PathsThatNameSomething(self.app.resource())

    # Base

    @app.route("/v2/", methods=["GET", "HEAD"])
    async def base(self, request: IRequest) -> bytes:
        # With auth on, the 401 here is how clients learn where to log in.
        await self._access.require_login(request)
        return json_response(request, {})

    # Blobs

    @app.route("/v2/<path:name>/blobs/<digest>", methods=["GET", "HEAD"])
    async def get_blob(self, request: IRequest, name: str, digest: str) -> bytes | None:
        await self._access.require(request, name, PULL)
        if request.method == b"HEAD":
            parsed, size = await self._registry.blob_size(name, digest)
            _set_headers(request, {
                "Content-Length": size,
                "Content-Type": "application/octet-stream",
                "Docker-Content-Digest": str(parsed),
                "Accept-Ranges": "bytes",
                "ETag": f'"{parsed}"',
            })
            return b""
        parsed, size, f = await self._registry.open_blob(name, digest)
        try:
            wanted = parse_range(request.getHeader("range"), size)
        except RegistryError:
            f.close()
            raise
        _set_headers(request, {
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": str(parsed),
            "Accept-Ranges": "bytes",
            "ETag": f'"{parsed}"',
        })
        start, length = 0, size
        if wanted is not None:
            request.setResponseCode(206)
            request.setHeader("Content-Range", f"bytes {wanted.start}-{wanted.end}/{size}")
            start, length = wanted.start, wanted.length
        request.setHeader("Content-Length", str(length))
        await FileProducer(f, start, length, request).send()
        return None

    @app.route("/v2/<path:name>/blobs/<digest>", methods=["DELETE"])
    async def delete_blob(self, request: IRequest, name: str, digest: str) -> bytes:
        await self._access.require(request, name, DELETE)
        await self._registry.delete_blob(name, digest)
        request.setResponseCode(202)
        request.setHeader("Content-Length", "0")
        return b""

    # Uploads

    @app.route("/v2/<path:name>/blobs/uploads/", methods=["POST"])
    @bodies.sink(streaming.monolithic_body)
    async def start_upload(self, request: IRequest, name: str) -> bytes:
        body = streaming.monolithic_upload_of(request)
        if body is not None:
            # Its sink asked whether the caller may push, before the body came.
            uuid, upload = await body.result()
            digest = _arg(request, "digest")
            assert digest is not None
            try:
                parsed, _ = await self._registry.complete_upload(name, uuid, digest, upload)
            except BaseException:
                # The client was never told where this upload is: it cannot resume it,
                # and on a full disk its bytes are the room others need.
                await self._registry.abandon_upload(uuid)
                raise
            return self._blob_created(request, name, parsed)
        await self._access.require(request, name, PUSH)
        mount, source = _arg(request, "mount"), _arg(request, "from")
        # Without pull on the source the mount is a normal upload: never a way to its blobs.
        if mount is not None and source is not None and await self._access.may(
            request, source, PULL
        ):
            mounted = await self._registry.mount(name, source, mount)
            if mounted is not None:
                return self._blob_created(request, name, mounted[0])
        uuid = await self._registry.start_upload(
            name, await self._access.new_upload_id(request),
            await self._access.upload_client(request),
        )
        return self._upload_progress(request, name, uuid, 0)

    def _blob_created(self, request: IRequest, name: str, digest) -> bytes:
        request.setResponseCode(201)
        _set_headers(request, {
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": str(digest),
            "Content-Length": 0,
        })
        return b""

    def _upload_progress(self, request: IRequest, name: str, uuid: str, size: int) -> bytes:
        request.setResponseCode(202)
        _set_headers(request, {
            "Location": upload_location(name, uuid),
            "Docker-Upload-UUID": uuid,
            "Range": upload_range(size),
            "OCI-Chunk-Min-Length": 0,
            "Content-Length": 0,
        })
        return b""

    @app.route("/v2/<path:name>/blobs/uploads/<uuid>", methods=["GET"])
    async def upload_status(self, request: IRequest, name: str, uuid: str) -> bytes:
        await self._access.require_upload(request, name, uuid)
        size = await self._registry.upload_size(name, uuid)
        self._upload_progress(request, name, uuid, size)
        request.setResponseCode(204)
        return b""

    # The sinks of these two ask whether the caller may write to the upload.

    @app.route("/v2/<path:name>/blobs/uploads/<uuid>", methods=["PATCH"])
    @bodies.sink(streaming.chunk_body)
    async def upload_chunk(self, request: IRequest, name: str, uuid: str) -> bytes:
        uuid, upload = await streaming.upload_of(request).result()
        size = await self._registry.release_upload(uuid, upload)
        return self._upload_progress(request, name, uuid, size)

    @app.route("/v2/<path:name>/blobs/uploads/<uuid>", methods=["PUT"])
    @bodies.sink(streaming.last_chunk_body)
    async def finish_upload(self, request: IRequest, name: str, uuid: str) -> bytes:
        uuid, upload = await streaming.upload_of(request).result()
        digest = _arg(request, "digest")
        assert digest is not None
        parsed, _ = await self._registry.complete_upload(name, uuid, digest, upload)
        return self._blob_created(request, name, parsed)

    @app.route("/v2/<path:name>/blobs/uploads/<uuid>", methods=["DELETE"])
    async def cancel_upload(self, request: IRequest, name: str, uuid: str) -> bytes:
        await self._access.require_upload(request, name, uuid)
        await self._registry.cancel_upload(name, uuid)
        request.setResponseCode(204)
        return b""

    # Manifests

    @app.route("/v2/<path:name>/manifests/<reference>", methods=["GET", "HEAD"])
    async def get_manifest(self, request: IRequest, name: str, reference: str) -> bytes:
        await self._access.require(request, name, PULL)
        manifest = await self._registry.get_manifest(name, reference)
        if not _acceptable(request, manifest.media_type):
            raise RegistryError(
                MANIFEST_UNKNOWN,
                f"manifest {reference!r} is a {manifest.media_type}, which the request's "
                "Accept header does not accept",
                {"mediaType": manifest.media_type},
            )
        _set_headers(request, {
            "Content-Type": manifest.media_type,
            "Content-Length": len(manifest.body),
            "Docker-Content-Digest": str(manifest.digest),
            "ETag": f'"{manifest.digest}"',
        })
        return b"" if request.method == b"HEAD" else manifest.body

    @app.route("/v2/<path:name>/manifests/<reference>", methods=["PUT"])
    @bodies.sink(streaming.manifest_body)
    async def put_manifest(self, request: IRequest, name: str, reference: str) -> bytes:
        # Its sink asked whether the caller may push, before keeping the body.
        body = await streaming.kept_body(request)
        pushed = await self._registry.put_manifest(
            name, reference, body, request.getHeader("content-type") or ""
        )
        request.setResponseCode(201)
        headers: dict[str, str | int] = {
            "Location": f"/v2/{name}/manifests/{pushed.digest}",
            "Docker-Content-Digest": str(pushed.digest),
            "Content-Length": 0,
        }
        if pushed.subject is not None:
            headers["OCI-Subject"] = str(pushed.subject)
        _set_headers(request, headers)
        return b""

    @app.route("/v2/<path:name>/manifests/<reference>", methods=["DELETE"])
    async def delete_manifest(self, request: IRequest, name: str, reference: str) -> bytes:
        await self._access.require(request, name, DELETE)
        await self._registry.delete_manifest(name, reference)
        request.setResponseCode(202)
        request.setHeader("Content-Length", "0")
        return b""

    # Listings

    @app.route("/v2/<path:name>/tags/list", methods=["GET"])
    async def tags(self, request: IRequest, name: str) -> bytes:
        await self._access.require(request, name, PULL)
        limit = page_size(_arg(request, "n"))
        found = await self._registry.tags(
            name, None if limit is None else limit + 1, _arg(request, "last")
        )
        found = _paginate(request, f"/v2/{name}/tags/list", found, limit)
        return json_response(request, {"name": name, "tags": found})

    @app.route("/v2/_catalog", methods=["GET"])
    async def catalog(self, request: IRequest) -> bytes:
        limit = page_size(_arg(request, "n"))
        if self._access.enabled:
            visible = await self._access.catalog_filter(request)
            found = await _visible_catalog(
                self._registry, visible, None if limit is None else limit + 1,
                _arg(request, "last"),
            )
        else:
            found = await self._registry.catalog(
                None if limit is None else limit + 1, _arg(request, "last")
            )
        found = _paginate(request, "/v2/_catalog", found, limit)
        return json_response(request, {"repositories": found})

    @app.route("/v2/<path:name>/referrers/<digest>", methods=["GET"])
    async def referrers(self, request: IRequest, name: str, digest: str) -> bytes:
        await self._access.require(request, name, PULL)
        artifact_type = _arg(request, "artifactType")
        found = await self._registry.referrers(name, digest, artifact_type)
        if artifact_type is not None:
            request.setHeader("OCI-Filters-Applied", "artifactType")
        return json_response(
            request,
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [d.to_json() for d in found],
            },
            content_type=OCI_INDEX,
        )


async def _visible_catalog(
    registry: RegistryOperations, visible, limit: int | None, last: str | None
) -> list[str]:
    """Up to `limit` names of the catalog after `last` that `visible` admits.

    The catalog is read in batches past the names the caller may not see, so
    a page is full whenever there are enough visible names after it.
    """
    found: list[str] = []
    batch = 1000
    while limit is None or len(found) < limit:
        names = await registry.catalog(batch, last)
        found.extend(n for n in names if visible(n))
        if len(names) < batch:
            break
        last = names[-1]
    return found if limit is None else found[:limit]
