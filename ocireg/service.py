"""The service tree: opens the stores, then serves the API on every endpoint."""

from __future__ import annotations

import os

from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import IResource, Resource

from ocireg.api.management import ManagementAPI
from ocireg.api.registry import RegistryAPI
from ocireg.api.site import RegistrySite
from ocireg.config import Config
from ocireg.db.postgresql import PostgreSQLMetadataStore
from ocireg.db.sqlite import SQLiteMetadataStore
from ocireg.interfaces import IMetadataStore
from ocireg.registry import Registry
from ocireg.storage.filesystem import FilesystemBlobStore
from ocireg.workers import Lifeline, Listener, WorkerPool, adopt

_log = Logger()


def build_site(registry: Registry) -> RegistrySite:
    """The web site: `/v2/` for the registry API, `/api/v1/` for management."""
    root = _Root(RegistryAPI(registry).resource(), ManagementAPI(registry).resource())
    return RegistrySite(root, registry)


class _Root(Resource):
    """Sends `/api/…` to the management app and everything else to the registry app."""

    def __init__(self, registry: IResource, management: IResource) -> None:
        super().__init__()
        self._registry = registry
        self._management = management

    def getChild(self, path: bytes, request) -> IResource:
        # Both Klein apps route from the root: give them back the whole path.
        request.postpath.insert(0, request.prepath.pop())
        return self._management if path == b"api" else self._registry


async def open_registry(config: Config, reactor) -> tuple[Registry, ThreadPool]:
    """The stores named by `config`, opened, in a Registry."""
    os.makedirs(config.data_dir, exist_ok=True)
    blob_pool = ThreadPool(2, 8, name="ocireg-blobs")
    blob_pool.start()
    try:
        blobs = FilesystemBlobStore(config.data_dir, reactor, blob_pool)
        metadata: IMetadataStore
        if config.database:
            metadata = await PostgreSQLMetadataStore.open(
                config.database, reactor, size=config.database_connections
            )
        else:
            metadata = await SQLiteMetadataStore.open(config.sqlite_path, reactor)
    except BaseException:
        blob_pool.stop()
        raise
    return Registry(metadata, blobs, reactor), blob_pool


class RegistryService(MultiService):
    """Opens the stores, then listens on every endpoint of `config.listen`."""

    def __init__(self, config: Config, reactor=None, listeners: tuple[Listener, ...] = ()) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self._config = config
        self._reactor = reactor
        #: Sockets inherited from a parent ocireg: set in a worker process only.
        self._listeners = listeners
        self._workers: WorkerPool | None = None
        self._ports: list = []
        self._registry: Registry | None = None
        self._blob_pool: ThreadPool | None = None
        self.ready: Deferred = Deferred()

    def startService(self) -> None:
        super().startService()
        d = Deferred.fromCoroutine(self._start())
        d.addErrback(self._failed_to_start)

    async def _start(self) -> None:
        self._registry, self._blob_pool = await open_registry(self._config, self._reactor)
        site = build_site(self._registry)
        if self._listeners:
            for listener in self._listeners:
                port = adopt(self._reactor, listener, site)
                self._ports.append(port)
                _log.info("ocireg worker serves {address}", address=port.getHost())
            Lifeline(self._reactor).start()
        else:
            for description in self._config.listen:
                endpoint = endpoints.serverFromString(self._reactor, description)
                port = await endpoint.listen(site)
                self._ports.append(port)
                _log.info("ocireg serves the registry API on {address}", address=port.getHost())
            if self._config.workers > 1:
                self._workers = WorkerPool(
                    self._reactor, self._config, self._ports, self._config.workers
                )
                self._workers.startService()
        self.ready.callback(self._ports)

    def _failed_to_start(self, failure) -> None:
        _log.failure("ocireg could not start", failure)
        if self._reactor.running:
            self._reactor.stop()

    async def _stop(self) -> None:
        await DeferredList([Deferred.fromCoroutine(_stop_listening(p)) for p in self._ports])
        self._ports = []
        if self._workers is not None:
            await self._workers.stopService()
        if self._registry is not None:
            await self._registry.metadata.close()
        if self._blob_pool is not None:
            self._blob_pool.stop()

    def stopService(self) -> Deferred:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())


async def _stop_listening(port) -> None:
    await port.stopListening()
