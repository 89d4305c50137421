"""The service tree: opens the stores, then serves the API on every endpoint."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping

import psycopg2
from prometheus_client import CollectorRegistry
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from ocireg.api.auth import AdminOnly, RequestAccess, TokenAPI
from ocireg.api.health import HealthAPI
from ocireg.api.management import ManagementAPI
from ocireg.api.metrics import MetricsAPI
from ocireg.api.observe import RequestObserver
from ocireg.api.registry import RegistryAPI
from ocireg.api.site import DEFAULT_LIMITS, ClientLimits, RegistrySite
from ocireg.api.streaming import BodyRoutes
from ocireg.auth.authoriser import OpenAuthoriser
from ocireg.auth.setup import AuthSetup, open_auth
from ocireg.cache import ReadCache
from ocireg.config import Config, ConfigError
from ocireg.datadir import DataDirLock, create_data_dir
from ocireg.db.migrations import SchemaTooNew
from ocireg.db.postgresql import DatabaseUnavailable, PostgreSQLMetadataStore
from ocireg.db.sqlite import SQLiteMetadataStore
from ocireg.housekeeping import Housekeeping, HousekeepingService
from ocireg.interfaces import IMetadataStore
from ocireg.metrics import MeasuredMetadataStore, RegistryMetrics
from ocireg.registry import Registry
from ocireg.requestlog import RequestLog
from ocireg.storage.filesystem import FilesystemBlobStore
from ocireg.storage.space import FreeSpace
from ocireg.workers import Lifeline, Listener, WorkerPool, adopt

_log = Logger()


def build_site(
    registry: Registry,
    extra: Mapping[bytes, IResource] | None = None,
    observers: Iterable[RequestObserver] = (),
    reactor=None,
    access: RequestAccess | None = None,
    token_path: str = "/token",
    housekeeping: Housekeeping | None = None,
    limits: ClientLimits = DEFAULT_LIMITS,
) -> RegistrySite:
    """The web site: `/v2/` for the registry API, `/api/v1/` for management.

    `extra` maps further first path segments (`healthz`, `metrics`) to their apps.
    With `access` authenticating, the management API and `/metrics` are for
    admins only, and the token endpoint is served at `token_path` when ocireg
    issues tokens.
    """
    access = access or RequestAccess(OpenAuthoriser())
    extra = dict(extra or {})
    management = ManagementAPI(registry, housekeeping).resource()
    if access.enabled:
        management = AdminOnly(management, access)
        if b"metrics" in extra:
            # Its labels name repositories, private ones too. /healthz and
            # /readyz tell nothing of the content and stay open for probes.
            extra[b"metrics"] = AdminOnly(extra[b"metrics"], access)
        if access.authoriser.issues_tokens:
            token_api = TokenAPI(access, token_path, reactor or _default_reactor())
            extra[token_path.split("/")[1].encode()] = token_api.resource()
    root = _Root(RegistryAPI(registry, access).resource(), management, extra)
    bodies = BodyRoutes((RegistryAPI.bodies, ManagementAPI.bodies))
    return RegistrySite(root, registry, bodies, observers, access=access, limits=limits,
                        reactor=reactor)


def _default_reactor():
    from twisted.internet import reactor

    return reactor


class _Root(Resource):
    """Sends `/api/…` to the management app, `extra`'s paths to theirs, the rest to the registry."""

    def __init__(
        self,
        registry: IResource,
        management: IResource,
        extra: Mapping[bytes, IResource] | None = None,
    ) -> None:
        super().__init__()
        self._registry = registry
        self._management = management
        self._extra = dict(extra or {})
        self._extra[b"api"] = management

    def getChild(self, path: bytes, request) -> IResource:
        # The Klein apps route from the root: give them back the whole path.
        request.postpath.insert(0, request.prepath.pop())
        return self._extra.get(path, self._registry)


def _admin_resources(
    registry: Registry, metrics: RegistryMetrics, blob_pool: ThreadPool, config: Config,
    reactor, stopping,
) -> dict[bytes, IResource]:
    """`/healthz`, `/readyz` (probing both stores and the free space) and `/metrics`."""

    async def metadata_answers() -> None:
        await registry.metadata.transact(lambda txn: txn.execute("SELECT 1"))

    def blob_store_answers() -> Deferred:
        # A stat and an access check: cheap, but on a disk that hangs (NFS) they
        # hang too, so off the reactor thread.
        return deferToThreadPool(reactor, blob_pool, _check_directory, config.data_dir)

    probes = {"metadata": metadata_answers, "blobs": blob_store_answers}
    refresh = None
    if registry.space is not None:
        probes["free_space"] = registry.space.probe
        refresh = registry.space.usage
    health = HealthAPI(probes, reactor, stopping).resource()
    return {
        b"healthz": health, b"readyz": health,
        b"metrics": MetricsAPI(metrics, refresh).resource(),
    }


def _check_directory(path: str) -> None:
    for where in (path, os.path.join(path, "blobs"), os.path.join(path, "uploads")):
        if not os.path.isdir(where):
            raise OSError(f"{where} is not a directory")
        if not os.access(where, os.W_OK | os.X_OK):
            raise OSError(f"{where} is not writable")


async def _listen(reactor, setting: str, description: str, factory):
    """Listen on endpoint `description` of `setting`; a ConfigError naming it when that fails."""
    try:
        endpoint = endpoints.serverFromString(reactor, description)
    except IndexError:
        # Twisted's systemd: parser indexes the sockets systemd passed.
        raise ConfigError(
            f"setting {setting!r}: endpoint {description!r} names a socket that systemd did "
            "not pass (is the .socket unit active?)"
        ) from None
    except Exception as e:
        # Whatever the parser raises is about the description: a bad value,
        # or a TLS key or certificate file that is missing or unreadable.
        raise ConfigError(
            f"setting {setting!r}: bad endpoint {description!r}: {_reason(e)}"
        ) from None
    try:
        return await endpoint.listen(factory)
    except CannotListenError as e:
        raise ConfigError(
            f"setting {setting!r}: cannot listen on {description!r}: {e.socketError}"
        ) from None


def _reason(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


async def open_registry(
    config: Config, reactor, lock: bool = True
) -> tuple[Registry, ThreadPool, DataDirLock]:
    """The stores named by `config`, opened, in a Registry; and the data directory's lock.

    `lock`: take the lock (see ocireg.datadir); a worker, whose parent holds it, does not.
    Every failure is a ConfigError naming the setting at fault, or an unexpected error.
    """
    create_data_dir(config.data_dir)
    held = (DataDirLock.take(config.data_dir, exclusive=not config.database) if lock
            else DataDirLock(None))
    blob_pool = ThreadPool(2, 8, name="ocireg-blobs")
    blob_pool.start()
    try:
        try:
            blobs = FilesystemBlobStore(config.data_dir, reactor, blob_pool, config.reserve)
        except OSError as e:
            raise ConfigError(f"setting 'data_dir': {e}") from None
        space = FreeSpace(config.data_dir, config.reserve, reactor, reactor, blob_pool)
        metadata: IMetadataStore
        cache: ReadCache
        if config.database:
            try:
                pg = await PostgreSQLMetadataStore.open(
                    config.database, reactor, size=config.database_connections
                )
            except (DatabaseUnavailable, SchemaTooNew, psycopg2.Error) as e:
                raise ConfigError(f"setting 'database': {_reason(e)}") from None
            # It reports this process's commits and hears the others': see ocireg.cache.
            cache = ReadCache(
                current=pg.catch_up, clock=reactor, stale_max_age=config.stale_cache_max_age
            )
            pg.on_change(cache.invalidate)
            pg.on_listening_lost(cache.suspend)
            metadata = pg
        else:
            try:
                lite = await SQLiteMetadataStore.open(config.sqlite_path, reactor)
            except (sqlite3.Error, SchemaTooNew) as e:
                raise ConfigError(
                    f"setting 'data_dir': cannot open {config.sqlite_path!r}: {e}"
                ) from None
            # One process, and the store reports each change it commits: see ocireg.cache.
            cache = ReadCache()
            lite.on_change(cache.invalidate)
            metadata = lite
    except BaseException:
        blob_pool.stop()
        held.release()
        raise
    registry = Registry(
        metadata, blobs, reactor, cache=cache, space=space,
        max_uploads_per_client=config.max_uploads_per_client,
    )
    return registry, blob_pool, held


class RegistryService(MultiService):
    """Opens the stores, then listens on every endpoint of `config.listen`."""

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
        self.metrics = metrics or RegistryMetrics(CollectorRegistry(), config.metrics_repositories)
        self._request_log = request_log or RequestLog()
        self._site: RegistrySite | None = None
        self._admin_ports: list = []
        self._stopping = False
        self._reactor = reactor
        #: Sockets inherited from a parent ocireg: set in a worker process only.
        self._listeners = listeners
        self._workers: WorkerPool | None = None
        self.housekeeping: Housekeeping | None = None
        self._housekeeping_timer: HousekeepingService | None = None
        self._ports: list = []
        self._registry: Registry | None = None
        self._blob_pool: ThreadPool | None = None
        self._lock: DataDirLock | None = None
        self._auth: AuthSetup | None = None
        self.ready: Deferred = Deferred()

    def startService(self) -> None:
        super().startService()
        d = Deferred.fromCoroutine(self._start())
        d.addErrback(self._failed_to_start)

    async def _start(self) -> None:
        self._registry, self._blob_pool, self._lock = await open_registry(
            self._config, self._reactor, lock=not self._listeners
        )
        self._registry.metadata = MeasuredMetadataStore(
            self._registry.metadata, self.metrics, self._reactor
        )
        self.housekeeping = Housekeeping.of(
            self._registry,
            self._reactor,
            self._config.gc_grace_period,
            self._config.staging_ttl,
            self._config.upload_ttl,
        )
        self.metrics.add_collector(self.housekeeping.figures)
        if self._registry.space is not None:
            self.metrics.add_collector(self._registry.space.figures)
        admin = _admin_resources(
            self._registry, self.metrics, self._blob_pool, self._config, self._reactor,
            lambda: self._stopping,
        )
        on_main = dict(admin)
        if self._config.admin_listen:
            del on_main[b"metrics"]
        self._auth = await open_auth(self._config, self._reactor)
        site = self._site = build_site(
            self._registry, on_main, (self._request_log, self.metrics), self._reactor,
            RequestAccess(self._auth.authoriser), self._config.auth_token_path,
            self.housekeeping,
            ClientLimits(
                self._config.max_connections, self._config.max_client_connections,
                self._config.header_timeout, self._config.max_client_buffer,
            ),
        )
        self.metrics.add_collector(site.figures)
        if self._listeners:
            for listener in self._listeners:
                port = adopt(self._reactor, listener, site)
                self._ports.append(port)
                _log.info("ocireg worker serves {address}", address=port.getHost())
            Lifeline(self._reactor).start()
        else:
            for description in self._config.listen:
                port = await _listen(self._reactor, "listen", description, site)
                self._ports.append(port)
                _log.info("ocireg serves the registry API on {address}", address=port.getHost())
            admin_site = Site(_Root(admin[b"healthz"], admin[b"healthz"], admin))
            for description in self._config.admin_listen:
                port = await _listen(self._reactor, "admin_listen", description, admin_site)
                self._admin_ports.append(port)
                _log.info("ocireg serves /healthz, /readyz and /metrics on {address}",
                          address=port.getHost())
            # Housekeeping runs in this process only, never in workers.
            self._housekeeping_timer = HousekeepingService(
                self.housekeeping, self._config.gc_interval, self._reactor
            )
            self._housekeeping_timer.startService()
            if self._config.workers > 1:
                self._workers = WorkerPool(
                    self._reactor, self._config, self._ports, self._config.workers
                )
                self._workers.startService()
        self.ready.callback(self._ports)

    def _failed_to_start(self, failure) -> None:
        if failure.check(ConfigError):
            # A setting's fault: the message names it, a traceback would only hide it.
            _log.critical("ocireg cannot start: {error}", error=str(failure.value))
        else:
            _log.failure("ocireg could not start", failure)
        if not self.ready.called:
            self.ready.errback(failure)
        if self._reactor.running:
            self._reactor.stop()
        else:
            # twistd starts the services before the reactor runs: a failure
            # before the first await lands here, and a stop must wait for it.
            self._reactor.callWhenRunning(self._reactor.stop)

    async def _stop(self) -> None:
        self._stopping = True
        await DeferredList([Deferred.fromCoroutine(_stop_listening(p)) for p in self._ports])
        self._ports = []
        if self._site is not None:
            in_flight = self._site.in_flight
            if in_flight:
                _log.info("waiting up to {timeout} s for {n} requests in flight",
                          timeout=self._config.shutdown_timeout, n=in_flight)
            cut_off = await self._site.drain(self._config.shutdown_timeout)
            if cut_off:
                _log.warn("cut off {n} requests still in flight after {timeout} s",
                          n=cut_off, timeout=self._config.shutdown_timeout)
        await DeferredList([Deferred.fromCoroutine(_stop_listening(p)) for p in self._admin_ports])
        self._admin_ports = []
        if self._workers is not None:
            await self._workers.stopService()
        if self._housekeeping_timer is not None:
            await self._housekeeping_timer.stopService()
        if self._registry is not None:
            await self._registry.metadata.close()
        if self._blob_pool is not None:
            self._blob_pool.stop()
        if self._lock is not None:
            self._lock.release()
        if self._auth is not None:
            self._auth.stop()

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
        if self._workers is None:
            return succeed(None)
        return self._workers.replace(config)

    def stopService(self) -> Deferred:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())


async def _stop_listening(port) -> None:
    await port.stopListening()
