"""The embedded metadata store: SQLite on one connection on one thread.

Python's sqlite3 objects belong to the thread that made them, so the
connection is opened, used and closed on a dedicated one-thread pool.
Transactions are serialised by a lock and start with `BEGIN IMMEDIATE`, so a
read-modify-write never loses an update; WAL lets readers of other processes
(backups, `sqlite3` on the command line) in while we write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import TypeVar

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorCore, IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ocireg.db.migrations import migrate
from ocireg.interfaces import IMetadataStore, ITransaction

T = TypeVar("T")


@implementer(ITransaction)
class _Transaction:
    for_update = ""

    def __init__(self, store: SQLiteMetadataStore) -> None:
        self._store = store

    def execute(self, sql: str, params: tuple = ()) -> Deferred:
        return self._store._run(self._store._execute, sql, params)


@implementer(IMetadataStore)
class SQLiteMetadataStore:
    """The metadata store in an SQLite file."""

    def __init__(self, path: str, reactor: IReactorThreads) -> None:
        self._path = path
        self._reactor = reactor
        self._pool = ThreadPool(1, 1, name="ocireg-sqlite")
        self._lock = DeferredLock()
        self._connection: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: str, reactor: IReactorThreads) -> SQLiteMetadataStore:
        """Open (creating and migrating when needed) the store at `path`."""
        store = cls(path, reactor)
        store._pool.start()
        try:
            await store._run(store._connect)
            await store._migrate()
        except BaseException:
            await store.close()
            raise
        return store

    def _run(self, f, *args) -> Deferred:
        return deferToThreadPool(self._reactor, self._pool, f, *args)

    def _connect(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit the client was told about survives a power loss.
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=10000")
        self._connection = connection

    def _execute(self, sql: str, params: tuple) -> list[tuple]:
        assert self._connection is not None, "the store is closed"
        return self._connection.execute(sql, params).fetchall()

    async def _migrate(self) -> None:
        await self.transact(lambda txn: migrate(txn, "sqlite"))

    def transact(self, interaction: Callable[[ITransaction], Awaitable[T]]) -> Deferred:
        return Deferred.fromCoroutine(self._transact(interaction))

    async def _transact(self, interaction: Callable[[ITransaction], Awaitable[T]]) -> T:
        await self._lock.acquire()
        try:
            await self._run(self._execute, "BEGIN IMMEDIATE", ())
            try:
                result = await interaction(_Transaction(self))
            except BaseException:
                await self._run(self._execute, "ROLLBACK", ())
                raise
            await self._run(self._execute, "COMMIT", ())
            return result
        finally:
            self._lock.release()

    async def close(self) -> None:
        await self._lock.acquire()
        try:
            if self._connection is not None:
                await self._run(self._connection.close)
                self._connection = None
        finally:
            self._lock.release()
            self._pool.stop()


def shutdown_with(reactor: IReactorCore, store: SQLiteMetadataStore) -> None:
    """Close `store` before `reactor` stops, so its thread does not keep the process alive."""
    reactor.addSystemEventTrigger("before", "shutdown", store.close)
