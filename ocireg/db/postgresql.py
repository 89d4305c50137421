"""The metadata store in PostgreSQL, on txpostgres (psycopg2's asynchronous mode).

The store runs each transaction on a connection of its pool
(`ocireg.db.pgpool`, which reconnects them), one transaction at a time on
each; the statements of a transaction go through `ocireg.db.pgstatements`,
which polls psycopg2 itself (see there for why). This module opens the
store (migrations, the change listener), retries deadlock victims and
reports changes. A transaction runs to its end even when its caller gives
up on it.

Concurrency. PostgreSQL runs transactions in READ COMMITTED; the domain's
`SELECT … FOR UPDATE` on a repository row serialises version creation per
repository. A transaction that PostgreSQL rolls back as a deadlock or
serialisation victim is run again, a few times.

Read-only interactions (`transact(..., readonly=True)`) send no BEGIN and no
COMMIT: each statement is then a transaction of its own, which saves the
COMMIT's round trip. For one statement that is exactly one transaction; for
several, each reads its own snapshot, as READ COMMITTED's statements do
inside a transaction anyway.

Changes. After a transaction that changed rows (an INSERT, UPDATE or DELETE
that touched at least one) commits, `on_change`'s callbacks run, before the
transaction's caller resumes — as the SQLite store's do. Such a transaction
commits with `NOTIFY ocireg_changes; COMMIT` in one round trip, so the
notification costs no extra one, and transactions that wrote nothing send
none. Other processes' changes arrive through a `ChangeListener`
(`ocireg.db.pgchanges`), a connection of its own beside the pool's, which
calls the same callbacks; `catch_up` tells whether it can have missed any,
and `on_listening_lost`'s callbacks run when it starts to miss them.
A COMMIT whose connection died under it may have committed: the callbacks
run for it too. PostgreSQL commits transactions that NOTIFY one at a time
(a database-wide lock held through the commit, to queue notifications in
commit order): concurrent writes wait for each other's commit and fsync,
which left pushes no slower in measurements (docs/performance.rst).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg2
import psycopg2.extensions
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import deferLater
from zope.interface import implementer

from ocireg.db.migrations import migrate
from ocireg.db.pgchanges import CHANNEL, ChangeListener
from ocireg.db.pgconnection import Connection, describe_dsn
from ocireg.db.pgerrors import DatabaseUnavailable
from ocireg.db.pgpool import START_TIMEOUT, ConnectionPool
from ocireg.db.pgstatements import Statements, run_transaction
from ocireg.interfaces import IMetadataStore, ITransaction

__all__ = ["START_TIMEOUT", "DatabaseUnavailable", "PostgreSQLMetadataStore"]

T = TypeVar("T")

#: Any number: the key of the advisory lock that serialises migrations, so
#: several processes starting at once migrate one after the other.
_MIGRATION_LOCK = 0x6F63_6972_6567

#: Runs of a transaction that PostgreSQL rolled back as a deadlock victim.
_ATTEMPTS = 4


@implementer(IMetadataStore)
class PostgreSQLMetadataStore:
    """The metadata store in the PostgreSQL database at `dsn`, over `size` connections."""

    def __init__(self, dsn: str, reactor, size: int = 4, timeout: float = 30.0) -> None:
        self._reactor = reactor
        self._on_change: list[Callable[[], object]] = []
        self._on_listening_lost: list[Callable[[], object]] = []
        # A hex token: the listener of this process tells its own notifications by it.
        token = secrets.token_hex(8)
        self._notify_and_commit = f"NOTIFY {CHANNEL}, '{token}'; COMMIT"
        self._listener = ChangeListener(
            dsn, reactor, token, self._changed, self._listening_lost, describe_dsn(dsn)
        )
        # The listener waits out a backoff of its own; once the pool is back, so is PostgreSQL.
        self._pool = ConnectionPool(dsn, reactor, size, timeout, self._listener.retry_now)

    @classmethod
    async def open(
        cls, dsn: str, reactor, size: int = 4, timeout: float = 30.0
    ) -> PostgreSQLMetadataStore:
        """Connect to `dsn` and migrate its schema; DatabaseUnavailable if it cannot connect."""
        store = cls(dsn, reactor, size, timeout)
        try:
            await store._pool.connect()
            await store.transact(store._migrate)
            try:
                await store._listener.start()
            except psycopg2.Error as e:
                raise DatabaseUnavailable(
                    f"cannot listen for changes at {describe_dsn(dsn)}: "
                    f"{' '.join(str(e).split()) or type(e).__name__}"
                ) from None
        except BaseException:
            await store.close()
            raise
        store._pool.repair()
        return store

    def on_change(self, callback: Callable[[], object]) -> None:
        """Call `callback` after each committed change of rows, this process's or another's.

        Also when it hears of them again after it may have missed some: see `catch_up`.
        """
        self._on_change.append(callback)

    def on_listening_lost(self, callback: Callable[[], object]) -> None:
        """Call `callback` when this process stops hearing of other processes' changes.

        `on_change`'s callbacks run once it hears of them again.
        """
        self._on_listening_lost.append(callback)

    def _listening_lost(self) -> None:
        for callback in self._on_listening_lost:
            callback()

    def catch_up(self) -> bool:
        """Report the changes already heard of; whether none can have gone unheard.

        False while the connection that hears other processes' changes is
        down: what was read before may be stale by now. Never waits.
        """
        return self._listener.catch_up()

    def _changed(self) -> None:
        for callback in self._on_change:
            callback()

    @staticmethod
    async def _migrate(txn: ITransaction) -> None:
        await txn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        await migrate(txn, "postgresql")

    def transact(
        self, interaction: Callable[[ITransaction], Awaitable[T]], readonly: bool = False
    ) -> Deferred:
        if self._pool.closing():
            # Its connections are closed for good: checking one out would never end.
            return fail(RuntimeError("the metadata store is closed"))
        running = Deferred.fromCoroutine(self._transact(interaction, readonly))
        # Whoever asked may give up (a client that hangs up cancels its
        # request's Deferreds); the transaction still runs to its end, since
        # one cut off between a statement and its answer would leave the
        # connection mid-protocol. The caller's Deferred fails at once.
        answer: Deferred = Deferred()
        running.chainDeferred(answer)
        return answer

    async def _transact(
        self, interaction: Callable[[ITransaction], Awaitable[T]], readonly: bool = False
    ) -> T:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await self._attempt(interaction, readonly)
            except psycopg2.extensions.TransactionRollbackError:
                if attempt == _ATTEMPTS:
                    raise
                # Let the transaction that won the deadlock finish before trying again.
                await deferLater(self._reactor, random.uniform(0.005, 0.05) * attempt)
        raise AssertionError("unreachable")

    async def _attempt(
        self, interaction: Callable[[ITransaction], Awaitable[T]], readonly: bool = False
    ) -> T:
        async def run(connection: Connection) -> T:
            statements = Statements(connection, self._reactor)
            statements.start()
            try:
                return await run_transaction(
                    statements, interaction, readonly, self._notify_and_commit, self._changed
                )
            finally:
                # Before a failure reaches the detector: the socket goes back
                # to the connection it came from.
                statements.stop()

        return await self._pool.lend(run)

    async def close(self) -> None:
        self._pool.close()
        self._listener.close()
