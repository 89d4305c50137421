"""The PostgreSQL store's connections: each lent to one transaction at a time.

A small fixed set of txpostgres connections, no thread: each connection is
a file descriptor the reactor watches.

Connection loss. Each connection has a txpostgres `DeadConnectionDetector`,
which marks it dead as soon as a statement (or the reactor, for an idle
connection) finds it so; the pool, not the detector, reconnects it. It tries
one dead connection at a time, soon after the loss and then every
`_RETRY_MAX_DELAY` s at most, and as soon as one attempt succeeds it
reconnects every other dead connection at once: PostgreSQL is back, and connections each on its own
backoff would come back one by one over seconds, failing requests meanwhile.

A transaction only ever gets a live connection. When none is free it waits
for one: while some are alive, until one is handed back (at most `timeout`);
while none is, until the next reconnection attempt, and fails when that
fails. So while PostgreSQL is down requests fail within a fraction of a
second, and those that arrive once it is back wait for their connection
rather than fail. A transaction that finds no connection, or whose connection
dies under it, fails with `unavailable()` (`ocireg.db.pgerrors`), which
the HTTP layer renders as a 503 with the OCI error JSON. A transaction that outlives
`timeout` has its connection closed (libpq's cancel would block the reactor
on an unreachable server), so a silent network never leaves a request
hanging. An attempt to reconnect that has no answer within
`CONNECT_TIMEOUT` is given up (libpq leaves that to the application in
asynchronous mode), so a server that accepts connections and never answers
holds up reconnection for no longer than that.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg2
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocireg.db.pgchanges import CONNECT_TIMEOUT
from ocireg.db.pgconnection import Connection, Detector, describe_dsn, is_connection_failure
from ocireg.db.pgerrors import DatabaseUnavailable, unavailable

T = TypeVar("T")

_log = Logger()

#: Seconds between attempts to reconnect while PostgreSQL cannot be reached:
#: the first after `_RETRY_FIRST_DELAY`, each next one twice as late, at most
#: `_RETRY_MAX_DELAY`. A request that arrives once PostgreSQL is back waits at
#: most about that long; refused attempts cost next to nothing.
_RETRY_FIRST_DELAY = 0.05
_RETRY_MAX_DELAY = 0.25

#: Seconds the start-up waits for the pool's connections: a server that
#: accepts and never answers (or a host that drops packets) would otherwise
#: hold the start for as long as TCP retries, or for ever.
START_TIMEOUT = 10.0


class ConnectionPool:
    """`size` connections to `dsn`; a transaction holding one for over `timeout` s loses it.

    `back` is called when a reconnection attempt succeeds after a loss:
    PostgreSQL is back.
    """

    def __init__(
        self, dsn: str, reactor, size: int, timeout: float, back: Callable[[], object]
    ) -> None:
        self._dsn = dsn
        self._database = describe_dsn(dsn)
        self._reactor = reactor
        self._timeout = timeout
        self._back = back
        self._closing = False
        #: Whether connection losses are repaired: not before `connect` is done.
        self._tracking = False
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

    def _new_connection(self) -> Connection:
        detector = Detector(
            self._reactor, self._database, self._repairing, self.closing, self._reconnect_soon
        )
        return Connection(reactor=self._reactor, detector=detector)

    def _repairing(self) -> bool:
        # A pool still opening fails its start instead; a closing one closes its connections.
        return self._tracking and not self._closing

    def closing(self) -> bool:
        """Whether `close` was called: the connections are closed for good."""
        return self._closing

    async def connect(self) -> None:
        """Connect every connection; DatabaseUnavailable if one cannot connect."""
        connecting = DeferredList(
            [c.connect(self._dsn) for c in self._connections], consumeErrors=True
        )
        # Not addTimeout: txpostgres cannot cancel a connection attempt
        # (its canceller raises), so the attempts are left to `close`.
        late: Deferred = deferLater(self._reactor, START_TIMEOUT, lambda: None)
        first, _ = await DeferredList(
            [connecting, late], fireOnOneCallback=True, consumeErrors=True
        )
        if not connecting.called:
            raise DatabaseUnavailable(
                f"cannot connect to {self._database}: no answer within {START_TIMEOUT:g} s"
            )
        late.cancel()
        for ok, result in first:
            if not ok:
                raise DatabaseUnavailable(
                    f"cannot connect to {self._database}: "
                    f"{' '.join(str(result.value).split()) or result.type.__name__}"
                )

    def repair(self) -> None:
        """From now on, reconnect connections that die (the store is open)."""
        self._tracking = True

    async def lend(self, use: Callable[[Connection], Awaitable[T]]) -> T:
        """`use(connection)` on a live connection no one else uses, within the timeout.

        A connection failure under it fails it with `unavailable()`.
        """
        connection = await self._checkout()
        timer = self._reactor.callLater(self._timeout, self._expire, connection)
        try:
            try:
                # Through the detector, so that a connection failure marks it dead.
                return await connection.detector.callChecking(
                    lambda: Deferred.fromCoroutine(use(connection))
                )
            except Exception as e:
                if is_connection_failure(Failure(e)):
                    raise unavailable() from e
                raise
        finally:
            if timer.active():
                timer.cancel()
            self._checkin(connection)

    async def _checkout(self) -> Connection:
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
                waiter.errback(unavailable())
                return

    def _fail_waiting(self) -> None:
        while self._waiting:
            waiter, timer = self._waiting.popleft()
            timer.cancel()
            waiter.errback(unavailable())

    def _checkin(self, connection: Connection) -> None:
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

    def _dead_and_idle(self) -> list[Connection]:
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
                "reconnecting to {database} failed", failure, database=self._database
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
                self._back()
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

    async def _reconnect(self, connection: Connection) -> bool:
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

    def _expire(self, connection: Connection) -> None:
        _log.warn(
            "a transaction on {database} took over {timeout} s: closing its connection",
            database=self._database, timeout=self._timeout,
        )
        # The detector sees the loss, the pool reconnects; the transaction fails as UNAVAILABLE.
        connection.close()

    def close(self) -> None:
        """Close every connection for good; transactions waiting for one fail."""
        self._closing = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._fail_waiting()
        for connection in self._connections:
            if connection._connection is not None:
                connection.close()
