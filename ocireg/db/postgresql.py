"""The metadata store in PostgreSQL, on txpostgres (psycopg2's asynchronous mode).

No thread is involved: each connection is a file descriptor the reactor
watches. The store keeps a small fixed set of connections and runs one
transaction at a time on each. txpostgres connects and reconnects them; the
statements of a transaction go through `_Statements`, which polls psycopg2
itself (see there for why). A transaction runs to its end even when its
caller gives up on it.

Connection loss. Each connection has a txpostgres `DeadConnectionDetector`,
which marks it dead as soon as a statement (or the reactor, for an idle
connection) finds it so; the store, not the detector, reconnects it. It tries
one dead connection at a time, soon after the loss and then every
`_RETRY_MAX_DELAY` s at most, and as soon as one attempt succeeds it reconnects every other dead
connection at once: PostgreSQL is back, and connections each on its own
backoff would come back one by one over seconds, failing requests meanwhile.

A transaction only ever gets a live connection. When none is free it waits
for one: while some are alive, until one is handed back (at most `timeout`);
while none is, until the next reconnection attempt, and fails when that
fails. So while PostgreSQL is down requests fail within a fraction of a
second, and those that arrive once it is back wait for their connection
rather than fail. A transaction that finds no connection, or whose connection
dies under it, fails with `RegistryError(UNAVAILABLE)`, which the HTTP layer
renders as a 503 with the OCI error JSON. A transaction that outlives
`timeout` has its connection closed (libpq's cancel would block the reactor
on an unreachable server), so a silent network never leaves a request
hanging. An attempt to reconnect that has no answer within
`CONNECT_TIMEOUT` is given up (libpq leaves that to the application in
asynchronous mode), so a server that accepts connections and never answers
holds up reconnection for no longer than that.

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

import os
import random
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import TypeVar

import psycopg2
import psycopg2.extensions
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReadDescriptor, IWriteDescriptor
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import reconnection, txpostgres
from zope.interface import implementer

from ocireg.db.migrations import migrate
from ocireg.db.pgchanges import CHANNEL, CONNECT_TIMEOUT, ChangeListener
from ocireg.errors import UNAVAILABLE, RegistryError
from ocireg.interfaces import IMetadataStore, ITransaction

T = TypeVar("T")

_log = Logger()

#: Any number: the key of the advisory lock that serialises migrations, so
#: several processes starting at once migrate one after the other.
_MIGRATION_LOCK = 0x6F63_6972_6567

#: Runs of a transaction that PostgreSQL rolled back as a deadlock victim.
_ATTEMPTS = 4

#: Seconds between attempts to reconnect while PostgreSQL cannot be reached:
#: the first after `_RETRY_FIRST_DELAY`, each next one twice as late, at most
#: `_RETRY_MAX_DELAY`. A request that arrives once PostgreSQL is back waits at
#: most about that long; refused attempts cost next to nothing.
_RETRY_FIRST_DELAY = 0.05
_RETRY_MAX_DELAY = 0.25


#: First words of the statements that may change rows; WITH may hold an INSERT,
#: UPDATE or DELETE, so it counts too (at worst one invalidation too many).
_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "WITH"})


#: Seconds the start-up waits for the pool's connections: a server that
#: accepts and never answers (or a host that drops packets) would otherwise
#: hold the start for as long as TCP retries, or for ever.
START_TIMEOUT = 10.0


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached at start-up; the message says where and why."""


@lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> str:
    """`sql` with the domain's `?` placeholders as psycopg2's `%s`.

    A literal `%` becomes `%%`; nothing inside a quoted literal or identifier
    is touched.
    """
    out = []
    quote = None
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None
            out.append("%%" if char == "%" else char)
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out)


@lru_cache(maxsize=1024)
def _may_write(sql: str) -> bool:
    """Whether statement `sql` may change rows."""
    words = sql.split(None, 1)
    return bool(words) and words[0].upper() in _WRITES


def describe_dsn(dsn: str) -> str:
    """`dsn` without its password, for messages and logs."""
    try:
        parts = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "an unparsable database URL"
    host = parts.get("host", "localhost")
    port = parts.get("port", "5432")
    user = parts.get("user", "")
    return f"postgresql://{user + '@' if user else ''}{host}:{port}/{parts.get('dbname', '')}"


def _is_connection_failure(failure: Failure) -> bool:
    """Whether `failure` means the connection (not the statement) failed."""
    if failure.check(psycopg2.extensions.TransactionRollbackError,
                     psycopg2.extensions.QueryCanceledError):
        # Deadlock victims and statement timeouts leave the connection usable.
        return False
    return bool(failure.check(
        psycopg2.InterfaceError,
        psycopg2.OperationalError,
        txpostgres.RollbackFailed,
        reconnection.ConnectionDead,
        ConnectionDone,
        ConnectionLost,
    ))


def _unavailable() -> RegistryError:
    return RegistryError(UNAVAILABLE, "the metadata database is unavailable; try again shortly")


class _Connection(txpostgres.Connection):
    """A txpostgres connection that reports an idle connection's death to its detector.

    txpostgres watches idle connections for NOTIFY; when the server goes
    away, psycopg2 raises from `doRead`, which the reactor would log as an
    unhandled error. Here it becomes a connection loss, which starts the
    reconnection.
    """

    def doRead(self) -> None:
        try:
            super().doRead()
        except psycopg2.Error as e:
            self.reactor.removeReader(self)
            self.connectionLost(Failure(e))


class _Detector(reconnection.DeadConnectionDetector):
    """Tells `store` that its connection died, for the store to reconnect it (see the module)."""

    def __init__(self, store: PostgreSQLMetadataStore) -> None:
        super().__init__(deathChecker=self._dead, reactor=store._reactor)
        self._store = store
        self.addRecoveryHandler(self._recovered)

    def _dead(self, failure: Failure) -> bool:
        # Closing the store closes its connections: no reason to reconnect. A
        # store still opening fails its start instead (see `open`).
        store = self._store
        return store._opened and not store._closing and _is_connection_failure(failure)

    def startReconnecting(self, f: Failure) -> None:
        _log.warn(
            "lost a connection to {database} ({error}): reconnecting",
            database=describe_dsn(self._store._dsn),
            error=str(f.value).strip() or f.type.__name__,
        )
        self._store._reconnect_soon()

    def _recovered(self) -> None:
        if not self._store._closing:
            _log.info("reconnected to {database}", database=describe_dsn(self._store._dsn))


@implementer(IReadDescriptor, IWriteDescriptor)
class _Statements:
    """One transaction's statements on `connection`, run one at a time.

    Not txpostgres' `Cursor`: for each statement that one takes the socket
    from the connection's watch and gives it back, registers and unregisters
    it with the reactor for the answer, and hands the answer over a reactor
    turn later, which doubled a statement's CPU (docs/performance.rst has
    the figures). Here the socket is taken from the connection
    once per transaction (`start`, `stop`), stays registered with the
    reactor while the transaction runs, and each answer is handed over as
    soon as it is read.

    The reactor watches a duplicate of the connection's socket: libpq closes
    its own when the connection fails, inside `poll`, and the reactor could
    then no longer unregister it (epoll refuses a closed descriptor, and
    Twisted's bookkeeping would keep it, deaf to the next socket given that
    number). The duplicate stays open until this lets go of it.

    The connection itself stays txpostgres': its detector reconnects it, and
    closing it (`PostgreSQLMetadataStore._expire`) tells this of the loss.
    """

    def __init__(self, connection: _Connection, reactor) -> None:
        self._connection = connection
        self._reactor = reactor
        self._pg = connection.pollable()
        self._cursor = self._pg.cursor()
        self._waiting: Deferred | None = None
        #: The duplicate of the connection's socket the reactor watches, if any.
        self._fd: int | None = None
        self._reading = False
        self._writing = False

    def start(self) -> None:
        # The connection stops watching its socket for NOTIFY, and will tell
        # this of its loss.
        self._connection.cursorRunning(self)

    def stop(self) -> None:
        self._unwatch()
        self._connection.cursorFinished(self)

    def execute(self, query: str, params: tuple = ()) -> Deferred:
        """A Deferred of the psycopg2 cursor, once `query` has run."""
        try:
            self._cursor.execute(query, params)
        except Exception:
            return fail()
        waiting = self._waiting = Deferred()
        self._poll()
        return waiting

    def in_failed_transaction(self) -> bool:
        return (self._pg.get_transaction_status()
                == psycopg2.extensions.TRANSACTION_STATUS_INERROR)

    def _poll(self) -> None:
        try:
            state = self._pg.poll()
        except Exception:
            self._unwatch()
            self._answer(Failure())
            return
        if state == psycopg2.extensions.POLL_OK:
            self._answer(self._cursor)
        elif state == psycopg2.extensions.POLL_READ:
            if not self._reading and self._watch():
                self._reading = True
                self._reactor.addReader(self)
        elif state == psycopg2.extensions.POLL_WRITE:
            if not self._writing and self._watch():
                self._writing = True
                self._reactor.addWriter(self)
        else:
            self._answer(Failure(txpostgres.UnexpectedPollResult()))

    def _watch(self) -> bool:
        """Have a descriptor for the reactor to watch; False (and the statement failed) if not."""
        if self._fd is None:
            try:
                self._fd = os.dup(self._pg.fileno())
            except (OSError, psycopg2.Error) as e:
                self._answer(Failure(psycopg2.OperationalError(f"connection unusable: {e}")))
                return False
        return True

    def _unwatch(self) -> None:
        if self._reading:
            self._reading = False
            self._reactor.removeReader(self)
        if self._writing:
            self._writing = False
            self._reactor.removeWriter(self)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _answer(self, result: object) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is None:
            return
        if isinstance(result, Failure):
            waiting.errback(result)
        else:
            waiting.callback(result)

    # IReadDescriptor, IWriteDescriptor

    def fileno(self) -> int:
        return -1 if self._fd is None else self._fd

    def logPrefix(self) -> str:
        return "postgresql"

    def doRead(self) -> None:
        if self._waiting is not None:
            self._poll()
            return
        # Nothing asked: the server spoke on its own (it is going away, say).
        try:
            self._pg.poll()
        except psycopg2.Error:
            self._unwatch()

    def doWrite(self) -> None:
        self._writing = False
        self._reactor.removeWriter(self)
        if self._waiting is not None:
            self._poll()

    def connectionLost(self, reason: Failure) -> None:
        self._unwatch()
        if self._waiting is None:
            return
        if self._pg.closed:
            self._answer(reason)
        else:
            # Polling reports psycopg2's own error for the loss.
            self._poll()


@implementer(ITransaction)
class _Transaction:
    for_update = " FOR UPDATE"

    def __init__(self, statements: _Statements, readonly: bool = False) -> None:
        self._statements = statements
        #: Whether statements run on their own, without BEGIN (see the module's doc).
        self._readonly = readonly
        self.begun = False
        #: Whether a statement changed rows.
        self.changed = False

    async def execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        query = to_pyformat(sql)
        if not self.begun and not self._readonly:
            # BEGIN rides along with the first statement: one round trip fewer.
            query = "BEGIN; " + query
            self.begun = True
        cursor = await self._statements.execute(query, params)
        if not self.changed and _may_write(sql) and cursor.rowcount > 0:
            self.changed = True
        if cursor.description is None:
            return []
        return cursor.fetchall()


async def _run_transaction(
    statements: _Statements,
    interaction: Callable[[ITransaction], Awaitable[T]],
    readonly: bool = False,
    notify_and_commit: str = "COMMIT",
    changed: Callable[[], object] = lambda: None,
) -> T:
    """`interaction` in one transaction run by `statements`, on a connection no one else is using.

    When it changed rows, it commits with `notify_and_commit` (the store's
    NOTIFY and COMMIT), and `changed` is called once that is answered,
    whatever the answer.

    Not txpostgres' runInteraction: that one logs a failed rollback as an
    unhandled error, and a rollback fails every time the connection dies
    mid-transaction; here that failure is the transaction's error instead.
    """
    txn = _Transaction(statements, readonly)
    try:
        result = await interaction(txn)
    except BaseException as e:
        if txn.begun:
            try:
                await statements.execute("ROLLBACK")
            except psycopg2.Error as rollback_error:
                raise rollback_error from e
        raise
    if txn.begun:
        if txn.changed:
            try:
                await statements.execute(notify_and_commit)
            except psycopg2.Error:
                # A failed NOTIFY (its queue full) skips the COMMIT after it: the
                # transaction is still open, aborted, and the connection goes back to the pool.
                if statements.in_failed_transaction():
                    await statements.execute("ROLLBACK")
                raise
            finally:
                changed()
        else:
            await statements.execute("COMMIT")
    return result


@implementer(IMetadataStore)
class PostgreSQLMetadataStore:
    """The metadata store in the PostgreSQL database at `dsn`, over `size` connections."""

    def __init__(self, dsn: str, reactor, size: int = 4, timeout: float = 30.0) -> None:
        self._dsn = dsn
        self._reactor = reactor
        self._timeout = timeout
        self._closing = False
        self._opened = False
        self._connections = [self._new_connection() for _ in range(size)]
        #: Connections no transaction is using, live or dead.
        self._idle = list(self._connections)
        #: Transactions waiting for a live connection, each with the call ending its wait.
        self._waiting: deque[tuple[Deferred, IDelayedCall]] = deque()
        #: The next attempt to reconnect, while one is scheduled.
        self._retry: IDelayedCall | None = None
        self._retry_delay = _RETRY_FIRST_DELAY
        #: Whether an attempt to reconnect is under way.
        self._reconnecting = False
        self._on_change: list[Callable[[], object]] = []
        self._on_listening_lost: list[Callable[[], object]] = []
        # A hex token: the listener of this process tells its own notifications by it.
        token = secrets.token_hex(8)
        self._notify_and_commit = f"NOTIFY {CHANNEL}, '{token}'; COMMIT"
        self._listener = ChangeListener(
            dsn, reactor, token, self._changed, self._listening_lost, describe_dsn(dsn)
        )

    def _new_connection(self) -> _Connection:
        detector = _Detector(self)
        connection = _Connection(reactor=self._reactor, detector=detector)
        return connection

    @classmethod
    async def open(
        cls, dsn: str, reactor, size: int = 4, timeout: float = 30.0
    ) -> PostgreSQLMetadataStore:
        """Connect to `dsn` and migrate its schema; DatabaseUnavailable if it cannot connect."""
        store = cls(dsn, reactor, size, timeout)
        try:
            connecting = DeferredList(
                [c.connect(dsn) for c in store._connections], consumeErrors=True
            )
            # Not addTimeout: txpostgres cannot cancel a connection attempt
            # (its canceller raises), so the attempts are left to `close`.
            late: Deferred = deferLater(reactor, START_TIMEOUT, lambda: None)
            first, _ = await DeferredList(
                [connecting, late], fireOnOneCallback=True, consumeErrors=True
            )
            if not connecting.called:
                raise DatabaseUnavailable(
                    f"cannot connect to {describe_dsn(dsn)}: no answer within "
                    f"{START_TIMEOUT:g} s"
                )
            late.cancel()
            results = first
            for ok, result in results:
                if not ok:
                    raise DatabaseUnavailable(
                        f"cannot connect to {describe_dsn(dsn)}: "
                        f"{' '.join(str(result.value).split()) or result.type.__name__}"
                    )
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
        store._opened = True
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
        if self._closing:
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
        connection = await self._checkout()
        timer = self._reactor.callLater(self._timeout, self._expire, connection)
        try:

            async def run() -> T:
                statements = _Statements(connection, self._reactor)
                statements.start()
                try:
                    return await _run_transaction(
                        statements, interaction, readonly, self._notify_and_commit,
                        self._changed,
                    )
                finally:
                    # Before a failure reaches the detector: the socket goes back
                    # to the connection it came from.
                    statements.stop()

            try:
                # Through the detector, so that a connection failure marks it dead.
                return await connection.detector.callChecking(
                    lambda: Deferred.fromCoroutine(run())
                )
            except Exception as e:
                if _is_connection_failure(Failure(e)):
                    raise _unavailable() from e
                raise
        finally:
            if timer.active():
                timer.cancel()
            self._checkin(connection)

    async def _checkout(self) -> _Connection:
        """A live connection no one else is using, once there is one (see the module)."""
        while True:
            for i, connection in enumerate(self._idle):
                if not connection.detector.connectionIsDead:
                    del self._idle[i]
                    break
            else:
                connection = await self._wait()
            if not connection.pollable().closed:
                return connection
            # psycopg2 saw it close, and nothing has told the detector yet.
            connection.detector.checkForDeadConnection(
                Failure(psycopg2.InterfaceError("connection already closed"))
            )
            self._checkin(connection)

    def _wait(self) -> Deferred:
        """A Deferred of the next live connection handed back or reconnected."""
        waiter: Deferred = Deferred()
        timer = self._reactor.callLater(self._timeout, self._give_up, waiter)
        self._waiting.append((waiter, timer))
        return waiter

    def _give_up(self, waiter: Deferred) -> None:
        for i, (waiting, timer) in enumerate(self._waiting):
            if waiting is waiter:
                del self._waiting[i]
                if timer.active():
                    timer.cancel()
                waiter.errback(_unavailable())
                return

    def _fail_waiting(self) -> None:
        while self._waiting:
            waiter, timer = self._waiting.popleft()
            timer.cancel()
            waiter.errback(_unavailable())

    def _checkin(self, connection: _Connection) -> None:
        """`connection` is free: to the first transaction waiting if it is live, else idle."""
        if not connection.detector.connectionIsDead and self._waiting:
            waiter, timer = self._waiting.popleft()
            timer.cancel()
            waiter.callback(connection)
            return
        self._idle.append(connection)
        if connection.detector.connectionIsDead:
            self._reconnect_soon()

    def _alive(self) -> bool:
        """Whether any connection, free or not, is believed alive."""
        return any(not c.detector.connectionIsDead for c in self._connections)

    def _dead_and_idle(self) -> list[_Connection]:
        # A connection in use is reconnected once its transaction has let go of it.
        return [c for c in self._idle if c.detector.connectionIsDead]

    def _reconnect_soon(self) -> None:
        """Have the next attempt to reconnect scheduled, unless one is under way or due."""
        if self._closing or self._reconnecting:
            return
        if self._retry is not None and self._retry.active():
            return
        self._retry = self._reactor.callLater(self._retry_delay, self._start_reconnecting)

    def _start_reconnecting(self) -> None:
        self._retry = None
        Deferred.fromCoroutine(self._reconnect_dead()).addErrback(
            lambda failure: _log.failure(
                "reconnecting to {database} failed", failure, database=describe_dsn(self._dsn)
            )
        )

    async def _reconnect_dead(self) -> None:
        """Reconnect one dead idle connection; if it comes back, every other one at once."""
        dead = self._dead_and_idle()
        if not dead or self._closing:
            return
        self._reconnecting = True
        try:
            if await self._reconnect(dead[0]):
                self._retry_delay = _RETRY_FIRST_DELAY
                # The listener waits out a backoff of its own; PostgreSQL is back now.
                self._listener.retry_now()
                await DeferredList([
                    Deferred.fromCoroutine(self._reconnect(c)) for c in self._dead_and_idle()
                ])
            else:
                self._retry_delay = min(self._retry_delay * 2, _RETRY_MAX_DELAY)
                if not self._alive():
                    # No connection to wait for until the next attempt: answer now.
                    self._fail_waiting()
        finally:
            self._reconnecting = False
        if self._dead_and_idle():
            self._reconnect_soon()

    async def _reconnect(self, connection: _Connection) -> bool:
        """Reconnect `connection`, dead and idle; whether it is alive again."""
        # Closing it fails the attempt under way.
        timer = self._reactor.callLater(CONNECT_TIMEOUT, connection.close)
        try:
            await connection.detector.reconnect()
        except Exception:
            return False
        finally:
            if timer.active():
                timer.cancel()
        if self._closing:
            connection.close()
            return False
        connection.detector.connectionRecovered()
        self._idle.remove(connection)
        self._checkin(connection)
        return True

    def _expire(self, connection: _Connection) -> None:
        _log.warn(
            "a transaction on {database} took over {timeout} s: closing its connection",
            database=describe_dsn(self._dsn), timeout=self._timeout,
        )
        # The detector sees the loss, the store reconnects; the transaction fails as UNAVAILABLE.
        connection.close()

    async def close(self) -> None:
        self._closing = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._fail_waiting()
        self._listener.close()
        for connection in self._connections:
            if connection._connection is not None:
                connection.close()
