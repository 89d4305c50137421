"""One PostgreSQL transaction's statements, polled by ocireg itself.

`Statements` runs a transaction's statements one at a time on a connection
the store has checked out; `Transaction` is the `ITransaction` the domain
sees (the domain's `?` placeholders become psycopg2's `%s`, and BEGIN rides
along with the first statement); `run_transaction` runs an interaction in
one, rolling back on failure and committing (with the store's NOTIFY when
rows changed) on success. The connections themselves, and their
reconnection, are `ocireg.db.pgconnection`'s and the store's.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import TypeVar

import psycopg2
import psycopg2.extensions
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.python.failure import Failure
from txpostgres import txpostgres
from zope.interface import implementer

from ocireg.db.pgconnection import Connection
from ocireg.interfaces import ITransaction

T = TypeVar("T")


#: First words of the statements that may change rows; WITH may hold an INSERT,
#: UPDATE or DELETE, so it counts too (at worst one invalidation too many).
WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "WITH"})


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
def may_write(sql: str) -> bool:
    """Whether statement `sql` may change rows."""
    words = sql.split(None, 1)
    return bool(words) and words[0].upper() in WRITES


@implementer(IReadDescriptor, IWriteDescriptor)
class Statements:
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
    closing it (the store does, to a transaction past its time) tells this of
    the loss.
    """

    def __init__(self, connection: Connection, reactor) -> None:
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
class Transaction:
    for_update = " FOR UPDATE"

    def __init__(self, statements: Statements, readonly: bool = False) -> None:
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
        if not self.changed and may_write(sql) and cursor.rowcount > 0:
            self.changed = True
        if cursor.description is None:
            return []
        return cursor.fetchall()


async def run_transaction(
    statements: Statements,
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
    txn = Transaction(statements, readonly)
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

