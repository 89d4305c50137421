"""The Klein routes of the management API (`/api/v1/`): repositories and their versions."""

from __future__ import annotations

import json

from klein import Klein
from twisted.web.iweb import IRequest

from ocireg.errors import RegistryError
from ocireg.registry import Registry


def _json(request: IRequest, document: object, status: int = 200) -> bytes:
    body = json.dumps(document).encode()
    request.setResponseCode(status)
    request.setHeader("Content-Type", "application/json")
    request.setHeader("Content-Length", str(len(body)))
    return body


class ManagementAPI:
    """Read the history of each repository."""

    app = Klein()

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def resource(self):
        return self.app.resource()

    @app.handle_errors(RegistryError)
    def _error(self, request: IRequest, failure) -> bytes:
        error: RegistryError = failure.value
        return _json(
            request,
            {"error": {"code": error.code.name, "message": error.message, "detail": error.detail}},
            error.status,
        )

    @app.route("/api/v1/repositories/<path:name>/versions/", methods=["GET"])
    async def list_versions(self, request: IRequest, name: str) -> bytes:
        found = await self._registry.versions(name)
        return _json(
            request,
            {
                "repository": name,
                "versions": [
                    {
                        "number": v.number,
                        "base_version": v.base_version,
                        "reason": v.reason,
                        "created": v.created,
                    }
                    for v in found
                ],
            },
        )

    @app.route("/api/v1/repositories/<path:name>/versions/<int:number>/content", methods=["GET"])
    async def version_content(self, request: IRequest, name: str, number: int) -> bytes:
        content = await self._registry.version_content(name, number)
        return _json(
            request,
            {
                "repository": name,
                "version": number,
                "tags": content["tag"],
                "manifests": sorted(content["manifest"]),
                "blobs": sorted(content["blob"]),
            },
        )
