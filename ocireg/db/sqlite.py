"""The embedded metadata store: SQLite on one connection on one thread.

Python's sqlite3 objects belong to the thread that made them, so the
connection is opened, used and closed on a dedicated one-thread pool.
Transactions run one after another on that thread and start with `BEGIN
IMMEDIATE`, so a read-modify-write never loses an update; WAL lets readers of
other processes (backups, `sqlite3` on the command line) in while we write.

One thread hop per transaction. A whole interaction (BEGIN, its statements,
COMMIT) runs on the database thread: each `txn.execute` there runs at once
and returns a fired Deferred, so the interaction's coroutine goes on without
leaving the thread. Handing every statement to the thread and its result
back cost two context switches each, and a manifest GET made five. An
interaction that awaits something else (the blob store's stat of a tag
write) has the database thread wait for it, as the transaction lock made
every other transaction wait before.

Changes. After a transaction that changed rows commits, `on_change`'s
callbacks run (on the reactor thread, before the transaction's caller
resumes): a cache of what the store holds drops what it knew.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorCore, IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ocireg.db.migrations import migrate
from ocireg.interfaces import IMetadataStore, ITransaction

T = TypeVar("T")

#: Longest a transaction waits, on the database thread, for something it awaits
#: that is not a statement (a stat of blob files): a hung disk fails the
#: transaction instead of stopping the store for good.
_AWAIT_TIMEOUT = 300.0


@implementer(ITransaction)
class _Transaction:
    """A transaction on the database thread: statements run at once, in that thread."""

    for_update = ""

    def __init__(self, store: SQLiteMetadataStore) -> None:
        self._store = store

    def execute(self, sql: str, params: tuple = ()) -> Deferred:
        try:
            return succeed(self._store._execute(sql, params))
        except Exception:
            return fail()


@implementer(IMetadataStore)
class SQLiteMetadataStore:
    """The metadata store in an SQLite file."""

    def __init__(self, path: str, reactor: IReactorThreads) -> None:
        self._path = path
        self._reactor = reactor
        self._pool = ThreadPool(1, 1, name="ocireg-sqlite")
        self._connection: sqlite3.Connection | None = None
        self._on_change: list[Callable[[], object]] = []
        self._closed = False

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

    def on_change(self, callback: Callable[[], object]) -> None:
        """Call `callback` after each committed transaction that changed rows."""
        self._on_change.append(callback)

    async def _migrate(self) -> None:
        await self.transact(lambda txn: migrate(txn, "sqlite"))

    def transact(self, interaction: Callable[[ITransaction], Awaitable[T]]) -> Deferred:
        return Deferred.fromCoroutine(self._transact(interaction))

    async def _transact(self, interaction: Callable[[ITransaction], Awaitable[T]]) -> T:
        result, changed = await self._run(self._interact, interaction)
        if changed:
            for callback in self._on_change:
                callback()
        return result

    def _interact(self, interaction: Callable[[ITransaction], Awaitable[T]]) -> tuple[T, bool]:
        """On the database thread: `interaction` in one transaction; its result, and if it wrote."""
        connection = self._connection
        assert connection is not None, "the store is closed"
        connection.execute("BEGIN IMMEDIATE")
        before = connection.total_changes
        try:
            result = self._drive(interaction(_Transaction(self)))
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result, connection.total_changes != before

    def _drive(self, awaitable: object) -> T:
        """Run `awaitable` to its end on this thread; wait here for Deferreds fired elsewhere."""
        if isinstance(awaitable, Deferred):
            self._wait(awaitable)
            return _result_of(awaitable)
        if not isinstance(awaitable, Coroutine):
            return awaitable  # type: ignore[return-value]
        coroutine = awaitable
        # Each round trip is one await of something not yet done: bounded by the work itself.
        while True:
            try:
                waiting = coroutine.send(None)
            except StopIteration as done:
                return done.value
            if not isinstance(waiting, Deferred):
                coroutine.close()
                raise TypeError(f"a transaction awaited {waiting!r}, not a Deferred")
            self._wait(waiting)

    def _wait(self, d: Deferred) -> None:
        """Block this (the database) thread until `d`, owned by the reactor thread, has fired."""
        if d.called and not d.paused:
            return
        fired = threading.Event()

        def watch() -> None:
            d.addBoth(_passing(fired.set))

        self._reactor.callFromThread(watch)
        if not fired.wait(_AWAIT_TIMEOUT):
            raise TimeoutError(f"a transaction waited over {_AWAIT_TIMEOUT} s for {d!r}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool.started:
            # Queued behind the transactions already handed to the thread: they finish first.
            await self._run(self._disconnect)
        self._pool.stop()

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _passing(f: Callable[[], object]) -> Callable[[T], T]:
    def call(result: T) -> T:
        f()
        return result

    return call


def _result_of(d: Deferred) -> object:
    """The result of fired Deferred `d` (raising its failure), as `await d` gives it."""
    iterator = d.__await__()
    try:
        next(iterator)
    except StopIteration as done:
        return done.value
    raise AssertionError("the Deferred has not fired")


def shutdown_with(reactor: IReactorCore, store: SQLiteMetadataStore) -> None:
    """Close `store` before `reactor` stops, so its thread does not keep the process alive."""
    reactor.addSystemEventTrigger("before", "shutdown", store.close)
