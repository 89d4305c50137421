"""The stores the configuration names, opened; and the services that close them.

Opening is the part of start-up that fails on a bad setting: every failure
here is a ConfigError naming the setting at fault (or an unexpected error).
Each opened thing goes into the service tree at once (`Closing`,
`ThreadPoolService`), so that stopping the tree, or a start that fails half
way, closes exactly what was opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import psycopg2
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger, LogLevel
from twisted.python.threadpool import ThreadPool

from ocireg.cache import ReadCache
from ocireg.config import Config, ConfigError
from ocireg.datadir import DataDirLock
from ocireg.db.migrations import SchemaTooNew
from ocireg.db.postgresql import DatabaseUnavailable, PostgreSQLMetadataStore
from ocireg.db.sqlite import SQLiteMetadataStore
from ocireg.serving import reason
from ocireg.storage.filesystem import FilesystemBlobStore
from ocireg.storage.space import FreeSpace

_log = Logger()


class Closing(Service):
    """Holds something opened before it joined the tree; `close` it when the tree stops."""

    def __init__(self, name: str, close: Callable[[], object]) -> None:
        self.name = name
        self._close = close

    def stopService(self) -> Deferred:
        super().stopService()
        return maybeDeferred(self._close)


class ThreadPoolService(Service):
    """Runs `pool` while the service runs: a running pool would keep the process alive."""

    def __init__(self, name: str, pool: ThreadPool) -> None:
        self.name = name
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()


def lock_data_dir(config: Config) -> Closing:
    """The lock on `config.data_dir` (see ocireg.datadir), held until the service stops."""
    lock = DataDirLock.take(config.data_dir, exclusive=not config.database)
    return Closing("data-dir-lock", lock.release)


def open_blob_store(config: Config, reactor, pool: ThreadPool) -> tuple[FilesystemBlobStore,
                                                                      FreeSpace]:
    """The blob store in `config.data_dir`, working on `pool`, and the free space it watches."""
    try:
        blobs = FilesystemBlobStore(config.data_dir, reactor, pool, config.reserve)
    except OSError as e:
        raise ConfigError(f"setting 'data_dir': {e}") from None
    return blobs, FreeSpace(config.data_dir, config.reserve, reactor, reactor, pool)


async def open_metadata_store(
    config: Config, reactor
) -> tuple[PostgreSQLMetadataStore | SQLiteMetadataStore, ReadCache]:
    """The metadata store `config` names, migrated; and the read cache its changes empty."""
    if config.database:
        try:
            pg = await PostgreSQLMetadataStore.open(
                config.database, reactor, size=config.database_connections
            )
        except (DatabaseUnavailable, SchemaTooNew, psycopg2.Error) as e:
            # The one line names the cause; how it came about is for debugging.
            _log.failure("opening the database at start-up", level=LogLevel.debug)
            raise ConfigError(f"setting 'database': {reason(e)}") from None
        # It reports this process's commits and hears the others': see ocireg.cache.
        cache = ReadCache(
            current=pg.catch_up, clock=reactor, stale_max_age=config.stale_cache_max_age
        )
        pg.on_change(cache.invalidate)
        pg.on_listening_lost(cache.suspend)
        return pg, cache
    try:
        lite = await SQLiteMetadataStore.open(config.sqlite_path, reactor)
    except (sqlite3.Error, SchemaTooNew) as e:
        raise ConfigError(
            f"setting 'data_dir': cannot open {config.sqlite_path!r}: {e}"
        ) from None
    # One process, and the store reports each change it commits: see ocireg.cache.
    cache = ReadCache()
    lite.on_change(cache.invalidate)
    return lite, cache
