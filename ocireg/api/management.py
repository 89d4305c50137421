"""The Klein routes of the management API (`/api/v1/`): parse, call, render.

JSON in and out. Every error is `{"error": {"code", "message", "field"?,
"detail"?}}`: 400 names the offending `field`, 404 is something that does not
exist, 409 a conflict with the current state. `openapi/` describes these
routes; tests/test_openapi_fuzz.py keeps the two in step.
"""

from __future__ import annotations

import json

import attrs
from klein import Klein
from twisted.web.iweb import IRequest
from werkzeug.routing import IntegerConverter

from ocireg.api.errors import NOT_FOUND, install_error_handlers, management_error
from ocireg.api.openapi import document as openapi_document
from ocireg.api.params import whole_number
from ocireg.api.render import json_response
from ocireg.api.routing import BodyTable
from ocireg.api.streaming import SinkFactory, admin_body, kept_body
from ocireg.domain.distributions import Distribution
from ocireg.domain.history import Diff, VersionSummary
from ocireg.domain.management_operations import ManagementOperations
from ocireg.domain.registry_operations import RegistryOperations
from ocireg.domain.repositories import RepositoryInfo
from ocireg.domain.rewrite import Change
from ocireg.domain.staging import Staging
from ocireg.errors import INVALID, RegistryError
from ocireg.housekeeping import Housekeeping

_ABSENT = object()


def _no_content(request: IRequest) -> bytes:
    request.setResponseCode(204)
    return b""


def _invalid(field: str, message: str) -> RegistryError:
    return RegistryError(INVALID, message, {"field": field})


def _query(request: IRequest, name: str) -> str | None:
    values = request.args.get(name.encode())
    if not values:
        return None
    try:
        value = values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(name, f"{name} is not UTF-8") from None
    if "\x00" in value:
        # PostgreSQL keeps no NUL in text, and no name, tag or digest holds one.
        raise _invalid(name, f"{name} holds a NUL character")
    return value


def _query_int(request: IRequest, name: str) -> int | None:
    value = _query(request, name)
    if value is None:
        return None
    number = whole_number(value, 9)
    if number is None:
        raise _invalid(name, f"{name} must be a whole number")
    return number


async def _body(request: IRequest) -> dict:
    raw = await kept_body(request, authorised_elsewhere=True)
    try:
        document = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: json nests by recursion, and a body of a few thousand `[` runs out.
        raise _invalid("body", "the body is not JSON") from None
    if not isinstance(document, dict):
        raise _invalid("body", "the body must be a JSON object")
    return document


def _field(document: dict, name: str, kind: type | tuple, required: bool = False,
           nullable: bool = True, default: object = None) -> object:
    """`document[name]`, checked to be of `kind` (bool is no int here)."""
    if name not in document:
        if required:
            raise _invalid(name, f"{name} is required")
        return default
    value = document[name]
    if value is None and nullable and not required:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__.replace("str", "string").replace("int", "integer")
                            for k in kinds)
        raise _invalid(name, f"{name} must be {names}")
    if isinstance(value, int) and not isinstance(value, bool) and not -2**31 <= value < 2**31:
        raise _invalid(name, f"{name} is out of range")
    return value


def _strings(document: dict, name: str) -> list[str]:
    value = _field(document, name, list, default=[]) or []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _invalid(f"{name}[{i}]", f"{name} must be a list of strings")
    return value


def _page(items: list, limit: int | None, key) -> tuple[list, str | None]:
    """Items fetched with one extra, cut to the page; the next page's cursor."""
    size = 100 if limit is None else limit
    if len(items) > size:
        items = items[:size]
        return items, key(items[-1])
    return items, None


def _repository(info: RepositoryInfo) -> dict:
    return attrs.asdict(info) | {"distributions": list(info.distributions)}


def _version(name: str, v: VersionSummary) -> dict:
    return {
        "repository": name,
        "number": v.number,
        "base_version": v.base_version,
        "reason": v.reason,
        "created": v.created,
        "added": v.added.to_json(),
        "removed": v.removed.to_json(),
        "present": v.present.to_json(),
    }


def _diff(name: str, d: Diff) -> dict:
    return {
        "repository": name,
        "base": d.base,
        "target": d.target,
        "tags": {
            "added": dict(d.tags_added),
            "removed": dict(d.tags_removed),
            "moved": {m.tag: {"from": m.old, "to": m.new} for m in d.tags_moved},
        },
        "manifests": {"added": list(d.manifests_added), "removed": list(d.manifests_removed)},
        "blobs": {"added": list(d.blobs_added), "removed": list(d.blobs_removed)},
    }


def _change(request: IRequest, name: str, change: Change) -> bytes:
    return json_response(
        request,
        {"repository": name, "version": change.version, "created": change.created},
        201 if change.created else 200,
    )


def _distribution(d: Distribution) -> dict:
    return {
        "base_path": d.base_path,
        "repository": d.repository,
        "version": d.version,
        "serves": d.serves,
        "created": d.created,
    }


def _staging(s: Staging, now: float) -> dict:
    return {
        "repository": s.repository,
        "age": None if s.oldest is None else max(now - s.oldest, 0.0),
        "content": [attrs.asdict(i) for i in s.items],
        "uploads": [attrs.asdict(u) for u in s.uploads],
    }


class _VersionNumber(IntegerConverter):
    """A version number in a path: 1 to 9 ASCII digits (else the path matches no route)."""

    regex = "[0-9]{1,9}"


class ManagementAPI:
    """Repositories, their versions, staging and distributions, under `/api/v1/`."""

    app = Klein()
    # As on /v2/: werkzeug would answer a missing trailing slash or a `//`
    # with a redirect, which Klein raises as an error. Match paths as they are.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    # Before any route: werkzeug's `int` takes any Unicode decimal digit ("١"
    # was version 1) and any length (past SQLite's integers: a 500).
    app.url_map.converters["int"] = _VersionNumber
    install_error_handlers(app, management_error, lambda request: NOT_FOUND)
    #: Every request's body, whatever its route, is an admin's: kept once the caller is
    #: known to be one (the check `AdminOnly` makes), so anyone else is answered before
    #: the body is read.
    bodies: BodyTable[SinkFactory] = BodyTable(app, "/api/", admin_body)

    def __init__(
        self, manage: ManagementOperations, registry: RegistryOperations, housekeeping: Housekeeping
    ) -> None:
        self._manage = manage
        self._registry = registry
        self._housekeeping = housekeeping

    def resource(self):
        return self.app.resource()

    @app.route("/api/v1/openapi.json", methods=["GET"])
    def openapi(self, request: IRequest) -> bytes:
        return json_response(request, openapi_document())

    # Repositories

    @app.route("/api/v1/repositories/", methods=["GET"])
    async def list_repositories(self, request: IRequest) -> bytes:
        limit = _query_int(request, "limit")
        found = await self._manage.list_repositories(
            _query(request, "prefix"), limit,
            _query(request, "after"),
        )
        found, following = _page(found, limit, lambda r: r.name)
        return json_response(request, {"repositories": [_repository(r) for r in found],
                               "next": following})

    @app.route("/api/v1/repositories/", methods=["POST"])
    async def create_repository(self, request: IRequest) -> bytes:
        document = await _body(request)
        info = await self._manage.create_repository(
            _field(document, "name", str, required=True),
            _field(document, "retain_versions", int),
            _field(document, "distribute", bool, nullable=False, default=True),
        )
        request.setHeader("Location", f"/api/v1/repositories/{info.name}")
        return json_response(request, _repository(info), 201)

    @app.route("/api/v1/repositories/<path:name>", methods=["GET"])
    async def show_repository(self, request: IRequest, name: str) -> bytes:
        return json_response(request, _repository(await self._manage.show_repository(name)))

    @app.route("/api/v1/repositories/<path:name>", methods=["PATCH"])
    async def update_repository(self, request: IRequest, name: str) -> bytes:
        document = await _body(request)
        keep = _field(document, "retain_versions", int, default=_ABSENT)
        if keep is _ABSENT:
            raise _invalid("retain_versions", "retain_versions (a number or null) is required")
        return json_response(request, _repository(await self._manage.set_retention(name, keep)))

    @app.route("/api/v1/repositories/<path:name>", methods=["DELETE"])
    async def delete_repository(self, request: IRequest, name: str) -> bytes:
        await self._manage.delete_repository(name)
        return _no_content(request)

    # Versions

    @app.route("/api/v1/repositories/<path:name>/versions/", methods=["GET"])
    async def list_versions(self, request: IRequest, name: str) -> bytes:
        found = await self._manage.list_versions(name)
        return json_response(
            request, {"repository": name, "versions": [_version(name, v) for v in found]}
        )

    @app.route("/api/v1/repositories/<path:name>/versions/<int:number>", methods=["GET"])
    async def show_version(self, request: IRequest, name: str, number: int) -> bytes:
        return json_response(request, _version(name, await self._manage.show_version(name, number)))

    @app.route("/api/v1/repositories/<path:name>/versions/<int:number>", methods=["DELETE"])
    async def delete_version(self, request: IRequest, name: str, number: int) -> bytes:
        await self._manage.delete_version(name, number)
        return _no_content(request)

    @app.route("/api/v1/repositories/<path:name>/versions/<int:number>/content",
               methods=["GET"])
    async def version_content(self, request: IRequest, name: str, number: int) -> bytes:
        await self._manage.show_version(name, number)
        content = await self._registry.version_content(name, number)
        return json_response(
            request,
            {
                "repository": name,
                "version": number,
                "tags": content["tag"],
                "manifests": sorted(content["manifest"]),
                "blobs": sorted(content["blob"]),
            },
        )

    @app.route("/api/v1/repositories/<path:name>/versions/<int:number>/content/<kind>",
               methods=["GET"])
    async def content_page(self, request: IRequest, name: str, number: int, kind: str) -> bytes:
        limit = _query_int(request, "limit")
        found = await self._manage.version_content(
            name, number, kind, limit, _query(request, "after")
        )
        found, following = _page(found, limit, lambda item: item[0])
        items = [{"name": n, "digest": d} if kind == "tags" else {"digest": d} for n, d in found]
        return json_response(request, {"repository": name, "version": number, "kind": kind,
                               "items": items, "next": following})

    @app.route("/api/v1/repositories/<path:name>/versions/<int:base>/diff/<int:target>",
               methods=["GET"])
    async def diff(self, request: IRequest, name: str, base: int, target: int) -> bytes:
        return json_response(request, _diff(name, await self._manage.diff(name, base, target)))

    @app.route("/api/v1/repositories/<path:name>/rollback", methods=["POST"])
    async def rollback(self, request: IRequest, name: str) -> bytes:
        document = await _body(request)
        number = _field(document, "version", int, required=True)
        return _change(request, name, await self._manage.rollback(name, number))

    @app.route("/api/v1/repositories/<path:name>/modify", methods=["POST"])
    async def modify(self, request: IRequest, name: str) -> bytes:
        document = await _body(request)
        add_tags = _field(document, "add_tags", dict, default={}) or {}
        for tag, reference in add_tags.items():
            if not isinstance(reference, str):
                raise _invalid(f"add_tags.{tag}", "add_tags maps tags to a tag or a digest")
        source = _field(document, "source", dict) or {}
        change = await self._manage.modify(
            name,
            add_tags,
            _strings(document, "remove_tags"),
            _strings(document, "add_manifests"),
            _strings(document, "remove_manifests"),
            _prefixed(_field, source, "repository", str),
            _prefixed(_field, source, "version", int),
        )
        return _change(request, name, change)

    # Staging

    @app.route("/api/v1/repositories/<path:name>/staging", methods=["GET"])
    async def staging(self, request: IRequest, name: str) -> bytes:
        found = await self._manage.staging(name)
        return json_response(request, _staging(found, self._registry.clock.seconds()))

    @app.route("/api/v1/repositories/<path:name>/staging", methods=["DELETE"])
    async def discard_staging(self, request: IRequest, name: str) -> bytes:
        discarded = await self._manage.discard_staging(name)
        return json_response(request, {"repository": name, "discarded": discarded})

    # Garbage collection and scrub

    @app.route("/api/v1/gc", methods=["POST"])
    async def collect(self, request: IRequest) -> bytes:
        dry_run = _field(await _body(request), "dry_run", bool, nullable=False, default=False)
        report = await self._housekeeping.collector.collect(dry_run=bool(dry_run))
        return json_response(request, report.to_json())

    @app.route("/api/v1/gc", methods=["GET"])
    def collections(self, request: IRequest) -> bytes:
        reports = self._housekeeping.collector.reports
        return json_response(request, {"runs": [r.to_json() for r in reversed(reports)]})

    @app.route("/api/v1/scrub", methods=["POST"])
    async def scrub(self, request: IRequest) -> bytes:
        report = await self._housekeeping.scrubber.scrub()
        return json_response(request, report.to_json())

    # Distributions

    @app.route("/api/v1/distributions/", methods=["GET"])
    async def list_distributions(self, request: IRequest) -> bytes:
        limit = _query_int(request, "limit")
        found = await self._manage.list_distributions(
            _query(request, "repository"), limit,
            _query(request, "after"),
        )
        found, following = _page(found, limit, lambda d: d.base_path)
        return json_response(request, {"distributions": [_distribution(d) for d in found],
                               "next": following})

    @app.route("/api/v1/distributions/", methods=["POST"])
    async def create_distribution(self, request: IRequest) -> bytes:
        document = await _body(request)
        created = await self._manage.create_distribution(
            _field(document, "base_path", str, required=True),
            _field(document, "repository", str, required=True),
            _field(document, "version", int),
        )
        request.setHeader("Location", f"/api/v1/distributions/{created.base_path}")
        return json_response(request, _distribution(created), 201)

    @app.route("/api/v1/distributions/<path:base_path>", methods=["GET"])
    async def show_distribution(self, request: IRequest, base_path: str) -> bytes:
        found = await self._manage.show_distribution(base_path)
        return json_response(request, _distribution(found))

    @app.route("/api/v1/distributions/<path:base_path>", methods=["PATCH"])
    async def update_distribution(self, request: IRequest, base_path: str) -> bytes:
        document = await _body(request)
        version = _field(document, "version", int, default=_ABSENT)
        updated = await self._manage.update_distribution(
            base_path,
            _field(document, "repository", str, nullable=False),
            None if version is _ABSENT else version,
            pin=version is not _ABSENT,
        )
        return json_response(request, _distribution(updated))

    @app.route("/api/v1/distributions/<path:base_path>", methods=["DELETE"])
    async def delete_distribution(self, request: IRequest, base_path: str) -> bytes:
        await self._manage.delete_distribution(base_path)
        return _no_content(request)


def _prefixed(field, document: dict, name: str, kind: type) -> object:
    """A field of the `source` object, its errors naming `source.<name>`."""
    try:
        return field(document, name, kind)
    except RegistryError as e:
        e.detail = {"field": f"source.{name}"}
        e.message = e.message.replace(name, f"source.{name}", 1)
        raise
