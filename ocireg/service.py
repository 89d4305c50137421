"""The service tree: the stores, the sites' listening services, the timers and the workers.

`RegistryService` is a `MultiService` assembled as its inputs come to be:
the stores open (asynchronously: a database connects and migrates), each
joins the tree the moment it is open, and the sites, built on them, join
it through their listening services. A child starts as it joins; the tree
stops its children one at a time in the reverse order, so the ports stop
listening first, then the requests in flight drain, then the stores close.
A start that fails half way stops what joined.

In order, for the main process: the data directory's lock, the blob store's
threads, the metadata store, the authoriser, the housekeeping timer, the
worker pool (which waits for the main ports), the admin endpoints, the
drain of the main site, the main endpoints. A worker process has no lock,
timer or workers: it serves the sockets it inherited, and watches its
lifeline to the parent.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ocireg.api.auth import RequestAccess
from ocireg.api.root import admin_resources, admin_site, build_site
from ocireg.api.site import ClientLimits
from ocireg.auth.authoriser import OpenAuthoriser
from ocireg.auth.setup import AuthSetup, open_auth
from ocireg.config import Config, ConfigError
from ocireg.datadir import create_data_dir
from ocireg.domain.registry_operations import RegistryOperations
from ocireg.heap import heap_trimmer
from ocireg.housekeeping import Housekeeping, HousekeepingService
from ocireg.metrics import MeasuredMetadataStore, RegistryMetrics
from ocireg.readiness import store_probes
from ocireg.requestlog import RequestLog
from ocireg.serving import Draining, ListeningService, parse_endpoint
from ocireg.stores import (
    Closing,
    ThreadPoolService,
    lock_data_dir,
    open_blob_store,
    open_metadata_store,
)
from ocireg.workers import InheritedEndpoint, Lifeline, Listener, WorkerPool

_log = Logger()


class _Stopped(Exception):
    """The tree was stopped while it was still being assembled."""


class RegistryService(MultiService):
    """Opens the stores, then listens on every endpoint of `config.listen`.

    `ready` fires with the main listening ports once every child runs, or
    fails with why the start failed (a ConfigError names the setting).
    """

    def __init__(
        self,
        config: Config,
        reactor=None,
        listeners: tuple[Listener, ...] = (),
        metrics: RegistryMetrics | None = None,
        request_log: RequestLog | None = None,
    ) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self._config = config
        self._reactor = reactor
        #: Sockets inherited from a parent ocireg: set in a worker process only.
        self._listeners = listeners
        self.metrics = metrics or RegistryMetrics(CollectorRegistry(), config.metrics_repositories)
        self._request_log = request_log or RequestLog()
        self._stopping = False
        self._registry: RegistryOperations | None = None
        self.housekeeping: Housekeeping | None = None
        self._auth: AuthSetup | None = None
        self.ready: Deferred = Deferred()

    @property
    def registry(self) -> RegistryOperations | None:
        """The registry's operations, once its stores are open."""
        return self._registry

    def startService(self) -> None:
        super().startService()
        d = Deferred.fromCoroutine(self._assemble())
        d.addCallbacks(self.ready.callback, self._failed_to_start)

    async def _attach(self, child: IService) -> None:
        """Add `child` to the tree, which starts it; _Stopped if the tree stopped meanwhile."""
        if not self.running:
            # A stop came while a store was opening: close what just opened.
            await maybeDeferred(child.stopService)
            raise _Stopped()
        child.setServiceParent(self)

    async def _assemble(self) -> list:
        config, reactor = self._config, self._reactor
        create_data_dir(config.data_dir)
        if not self._listeners:
            # A worker's parent holds the lock for it (see ocireg.datadir).
            await self._attach(lock_data_dir(config))
        blob_pool = ThreadPool(2, 8, name="ocireg-blobs")
        await self._attach(ThreadPoolService("blob-threads", blob_pool))
        blobs, space = open_blob_store(config, reactor, blob_pool)
        store, cache = await open_metadata_store(config, reactor)
        await self._attach(Closing("metadata", store.close))
        registry = self._registry = RegistryOperations(
            MeasuredMetadataStore(store, self.metrics, reactor), blobs, reactor, cache=cache,
            space=space, max_uploads_per_client=config.max_uploads_per_client,
        )
        housekeeping = self.housekeeping = Housekeeping.of(
            registry, reactor, config.gc_grace_period, config.staging_ttl, config.upload_ttl
        )
        self.metrics.add_collector(housekeeping.figures)
        self.metrics.add_collector(space.figures)
        auth = self._auth = await open_auth(config, reactor)
        await self._attach(Closing("auth", auth.stop))

        admin = admin_resources(
            store_probes(registry.metadata, config.data_dir, blob_pool, reactor, space),
            self.metrics, reactor, lambda: self._stopping, space.usage,
        )
        on_main = dict(admin)
        if config.admin_listen:
            del on_main[b"metrics"]
        site = build_site(
            registry, housekeeping, RequestAccess(auth.authoriser), reactor, on_main,
            (self._request_log, self.metrics, heap_trimmer(reactor, blob_pool)),
            config.auth_token_path,
            ClientLimits(config.max_connections, config.max_client_connections,
                         config.header_timeout, config.max_client_buffer),
        )
        self.metrics.add_collector(site.figures)

        if self._listeners:
            inherited = [(str(fd), InheritedEndpoint(reactor, fd)) for fd in self._listeners]
            main = _listening("listen", inherited, site)
            await self._attach(Draining(site, config.shutdown_timeout))
            ports = await self._listen_all(main, "ocireg worker serves {address}")
            await self._attach(Lifeline(reactor))
            return ports

        main = _listening("listen", _parsed(reactor, "listen", config.listen), site)
        admin_ports = _listening(
            "admin_listen", _parsed(reactor, "admin_listen", config.admin_listen), admin_site(admin)
        )
        # Housekeeping runs in this process only, never in workers.
        await self._attach(HousekeepingService(housekeeping, config.gc_interval, reactor))
        if config.workers > 1:
            await self._attach(WorkerPool(reactor, config, main, config.workers))
        await self._listen_all(
            admin_ports, "ocireg serves /healthz, /readyz and /metrics on {address}"
        )
        await self._attach(Draining(site, config.shutdown_timeout))
        return await self._listen_all(main, "ocireg serves the registry API on {address}")

    async def _listen_all(self, services: list[ListeningService], news: str) -> list:
        ports = []
        for service in services:
            await self._attach(service)
            port = await service.listening()
            if not self.running:
                raise _Stopped()
            _log.info(news, address=port.getHost())
            ports.append(port)
        return ports

    def _failed_to_start(self, failure: Failure) -> None:
        if failure.check(_Stopped):
            failure = Failure(CancelledError("stopped before it was ready"))
        elif failure.check(ConfigError):
            # A setting's fault: the message names it, a traceback would only hide it.
            _log.critical("ocireg cannot start: {error}", error=str(failure.value))
        else:
            _log.failure("ocireg could not start", failure)
        self.ready.errback(failure)

    def stopService(self) -> Deferred:
        # Not MultiService's, which stops every child at once.
        Service.stopService(self)
        self._stopping = True
        return Deferred.fromCoroutine(self._stop_children())

    async def _stop_children(self) -> None:
        for child in reversed(list(self)):
            try:
                await maybeDeferred(child.stopService)
            except Exception:
                _log.failure("stopping {name} failed", name=child.name)

    def reload_hooks(self) -> dict[str, Callable[[object, object], str]]:
        """Setting -> hook(old, new) for the settings this service applies on a reload."""

        def later(setting: str) -> Callable[[object, object], str]:
            # The authoriser exists once the service has started.
            def hook(old: object, new: object) -> str:
                if self._auth is None:
                    raise ValueError("the registry has not started yet")
                return self._auth.reload_hooks()[setting](old, new)

            return hook

        return {setting: later(setting) for setting in AuthSetup(OpenAuthoriser()).reload_hooks()}

    def replace_workers(self, config: Config) -> Deferred:
        """Restart the worker processes (if any) on reloaded settings, one at a time."""
        workers = self.namedServices.get("workers")
        if workers is None:
            return succeed(None)
        return workers.replace(config)


def _parsed(reactor, setting: str, descriptions: tuple[str, ...]) -> list[tuple[str, object]]:
    """Each endpoint description of `setting`, with its endpoint."""
    return [(d, parse_endpoint(reactor, setting, d)) for d in descriptions]


def _listening(setting: str, endpoints: list[tuple[str, object]], site) -> list[ListeningService]:
    """A ListeningService serving `site` on each (description, endpoint) of `setting`."""
    services = []
    for i, (description, endpoint) in enumerate(endpoints):
        service = ListeningService(setting, description, endpoint, site)
        service.setName(f"{setting} {i}")
        services.append(service)
    return services
