"""The embedded metadata store: SQLite on one connection on one thread.

Python's sqlite3 objects belong to the thread that made them, so the
connection is opened, used and closed on a dedicated one-thread pool.
Transactions run one after another on that thread and start with `BEGIN
IMMEDIATE`, so a read-modify-write never loses an update; WAL lets readers of
other processes (backups, `sqlite3` on the command line) in while we write.

One thread hop per transaction. A whole interaction (BEGIN, its statements,
COMMIT) runs on the database thread: each `txn.execute` there runs at once
and returns a fired Deferred, so the interaction's coroutine goes on without
leaving the thread, rather than paying two context switches per statement
to hand it to the thread and its result back. An interaction that awaits
something else (the blob store's stat of a tag write) has the database
thread wait for it, and the transactions behind it with it, as they would
wait for its write lock anyway.

Group commit. Transactions asked for while the thread is busy wait, and go
to it together: each in a savepoint of its own (a failing one takes back
only its own changes), then one COMMIT, so concurrent pushes share one
fsync instead of paying one each. Their callers hear back only after that
commit.

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
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ocireg.db.migrations import migrate
from ocireg.errors import STORAGE_FULL, RegistryError
from ocireg.interfaces import IMetadataStore, ITransaction

T = TypeVar("T")
_log = Logger()

#: SQLite's primary result code for "database or disk is full".
_SQLITE_FULL = 13

#: Most transactions committed together (see `_interact_group`).
_GROUP = 64

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
        #: Transactions asked for and not yet handed to the thread, with their Deferreds.
        self._waiting: list[tuple[Callable[[ITransaction], Awaitable[object]], Deferred]] = []
        self._group_running = False
        #: Fired by the group that leaves nothing waiting, when `close` waits for it.
        self._idle: Deferred | None = None

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

    def on_listening_lost(self, callback: Callable[[], object]) -> None:
        """Never calls `callback`: no other process writes to this store, so none goes unheard."""

    def catch_up(self) -> bool:
        """Whether the store is open: every change goes through it, and is reported at once."""
        return not self._closed

    async def _migrate(self) -> None:
        await self.transact(lambda txn: migrate(txn, "sqlite"))

    def transact(
        self, interaction: Callable[[ITransaction], Awaitable[T]], readonly: bool = False
    ) -> Deferred:
        # `readonly` changes nothing here: reads already share the group's
        # one thread hop and transaction, which cost no round trip.
        if self._closed:
            return fail(RuntimeError("the metadata store is closed"))
        d: Deferred = Deferred()
        self._waiting.append((interaction, d))
        self._next_group()
        return d

    def _next_group(self) -> None:
        """Hand the transactions waiting to the database thread, unless a group is there already."""
        if self._group_running or not self._waiting:
            if not self._group_running and self._idle is not None:
                idle, self._idle = self._idle, None
                idle.callback(None)
            return
        group, self._waiting = self._waiting[:_GROUP], self._waiting[_GROUP:]
        self._group_running = True
        self._run(self._interact_group, [interaction for interaction, _ in group]).addBoth(
            self._group_done, [d for _, d in group]
        )

    def _group_done(self, outcome, waiting: list[Deferred]) -> None:
        self._group_running = False
        if isinstance(outcome, Failure):
            outcomes = [(False, outcome)] * len(waiting)
        else:
            outcomes, changed = outcome
            if changed:
                for callback in self._on_change:
                    callback()
        if any(not ok and _disk_full(result) for ok, result in outcomes):
            _log.warn("the metadata database {path} could not be written: its disk is full",
                      path=self._path)
            full = Failure(RegistryError(
                STORAGE_FULL, "the registry is out of storage space for its metadata"
            ))
            outcomes = [
                (False, full) if not ok and _disk_full(result) else (ok, result)
                for ok, result in outcomes
            ]
        for (ok, result), d in zip(outcomes, waiting, strict=True):
            if ok:
                d.callback(result)
            else:
                d.errback(result)
        self._next_group()

    def _interact_group(self, group: list[Callable[[ITransaction], Awaitable[object]]]
                        ) -> tuple[list[tuple[bool, object]], bool]:
        """On the database thread: each interaction of `group` in turn, all in one commit.

        Each runs in a savepoint of its own, so a failing one takes back only
        its own changes; the group then commits once: one fsync for every
        transaction that was waiting, not one each. Returns each one's outcome
        (succeeded, result or Failure) and whether the commit changed rows.
        """
        connection = self._connection
        if connection is None:
            closed = Failure(RuntimeError("the metadata store is closed"))
            return [(False, closed)] * len(group), False
        outcomes: list[tuple[bool, object]] = []
        connection.execute("BEGIN IMMEDIATE")
        # Rows changed by the interactions that succeeded (a rolled-back one's count too).
        changed = False
        for interaction in group:
            connection.execute("SAVEPOINT one")
            before = connection.total_changes
            try:
                result = self._drive(interaction(_Transaction(self)))
            except BaseException:
                failure = Failure()
                if connection.in_transaction:
                    connection.execute("ROLLBACK TO one")
                    connection.execute("RELEASE one")
                else:
                    # SQLite rolled the whole transaction back (a full disk, an I/O
                    # error): what succeeded before in this group is gone with it.
                    outcomes = [(False, failure)] * len(outcomes)
                    changed = False
                    connection.execute("BEGIN IMMEDIATE")
                outcomes.append((False, failure))
            else:
                connection.execute("RELEASE one")
                outcomes.append((True, result))
                changed = changed or connection.total_changes != before
        try:
            connection.execute("COMMIT")
        except BaseException:
            failure = Failure()
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            return [(False, failure)] * len(group), False
        return outcomes, changed

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
        if self._group_running or self._waiting:
            # The transactions already asked for finish first.
            self._idle = Deferred()
            await self._idle
        if self._pool.started:
            await self._run(self._disconnect)
        self._pool.stop()

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _disk_full(failure: object) -> bool:
    error = failure.value if isinstance(failure, Failure) else None
    return isinstance(error, sqlite3.Error) and (
        getattr(error, "sqlite_errorcode", 0) & 0xFF
    ) == _SQLITE_FULL


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
