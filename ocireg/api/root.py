"""The web sites' resource trees: which app serves each first path segment, and with what.

The main site serves `/v2/` (the registry API), `/api/` (management) and
the extra apps (`/healthz`, `/readyz`, `/metrics`, the token endpoint); an
admin site serves only the extra ones. Every app gets its collaborators
here, already built: none builds its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from ocireg.api.auth import AdminOnly, RequestAccess
from ocireg.api.health import HealthAPI, Probe
from ocireg.api.management import ManagementAPI
from ocireg.api.metrics import MetricsAPI
from ocireg.api.observe import RequestObserver
from ocireg.api.registry import RegistryAPI
from ocireg.api.site import DEFAULT_LIMITS, ClientLimits, RegistrySite, UnbrandedRequest
from ocireg.api.streaming import BodyRoutes
from ocireg.api.token import TokenAPI
from ocireg.domain.management_operations import ManagementOperations
from ocireg.domain.registry_operations import RegistryOperations
from ocireg.housekeeping import Housekeeping
from ocireg.metrics import RegistryMetrics


def build_site(
    registry: RegistryOperations,
    housekeeping: Housekeeping,
    access: RequestAccess,
    reactor,
    extra: Mapping[bytes, IResource] | None = None,
    observers: Iterable[RequestObserver] = (),
    token_path: str = "/token",
    limits: ClientLimits = DEFAULT_LIMITS,
) -> RegistrySite:
    """The main site: `/v2/` for the registry API, `/api/v1/` for management, `extra`'s apps.

    `extra` maps further first path segments (`healthz`, `metrics`) to their apps.
    With `access` authenticating, the management API and `/metrics` are for
    admins only, and the token endpoint is served at `token_path` when ocireg
    issues tokens.
    """
    extra = dict(extra or {})
    management: IResource = ManagementAPI(
        ManagementOperations(registry.metadata, registry.blobs, registry.clock),
        registry,
        housekeeping,
    ).resource()
    if access.enabled:
        management = AdminOnly(management, access)
        if b"metrics" in extra:
            # Its labels name repositories, private ones too. /healthz and
            # /readyz tell nothing of the content and stay open for probes.
            extra[b"metrics"] = AdminOnly(extra[b"metrics"], access)
        if access.authoriser.issues_tokens:
            token_api = TokenAPI(access, token_path, reactor)
            extra[token_path.split("/")[1].encode()] = token_api.resource()
    root = Root(RegistryAPI(registry, access).resource(), {**extra, b"api": management})
    bodies = BodyRoutes((RegistryAPI.bodies, ManagementAPI.bodies))
    return RegistrySite(
        root, registry, bodies, observers, access=access, limits=limits, reactor=reactor
    )


def admin_resources(
    probes: Mapping[str, Probe],
    metrics: RegistryMetrics,
    reactor,
    stopping: Callable[[], bool],
    refresh: Callable[[], Awaitable[object]] | None = None,
) -> dict[bytes, IResource]:
    """`/healthz`, `/readyz` (running `probes`) and `/metrics` (after `refresh`)."""
    health = HealthAPI(probes, reactor, stopping).resource()
    return {
        b"healthz": health, b"readyz": health,
        b"metrics": MetricsAPI(metrics, refresh).resource(),
    }


def admin_site(admin: Mapping[bytes, IResource]) -> Site:
    """The site of `admin_listen`: only `admin`'s apps, and the health app's 404 elsewhere."""
    return Site(Root(admin[b"healthz"], admin), requestFactory=UnbrandedRequest)


class Root(Resource):
    """Sends each first path segment in `apps` to its app, any other to `default`."""

    def __init__(self, default: IResource, apps: Mapping[bytes, IResource]) -> None:
        super().__init__()
        self._default = default
        self._apps = dict(apps)

    def getChild(self, path: bytes, request) -> IResource:
        # The Klein apps route from the root: give them back the whole path.
        request.postpath.insert(0, request.prepath.pop())
        return self._apps.get(path, self._default)
