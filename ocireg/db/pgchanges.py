"""Other processes' committed changes, heard through PostgreSQL's LISTEN/NOTIFY.

Every PostgreSQL store that commits a transaction that changed rows sends
`NOTIFY ocireg_changes, '<its token>'` in the same round trip as its COMMIT;
PostgreSQL delivers it, on commit, to every connection listening on that
channel in the database. `ChangeListener` is that connection for one
process: it calls `changed` for each notification from another store.

What the listener knows is only as good as its connection: notifications
sent while it is down are lost for good. So while it is not listening,
`catch_up` says "not current", `lost` is called when the connection is lost
(an answer kept from before may be stale by the time anyone asks), and
`changed` once it listens anew (changes may have been missed meanwhile).
It reconnects on its own, with a bounded backoff, until closed; an attempt
with no answer within `CONNECT_TIMEOUT` seconds is given up. TCP
keepalives on its connection turn a silent network (no reset, no FIN) into a
loss within about `_KEEPALIVE_IDLE + _KEEPALIVE_INTERVAL * _KEEPALIVE_COUNT`
seconds; until then a process cut off from the database hears nothing.

Delivery is asynchronous: PostgreSQL hands a notification to the listening
backend, which writes it to this connection's socket, while the committing
process already has its COMMIT's answer. `catch_up` reads what has already
arrived on the socket without waiting (one `poll(2)` with no timeout, cheap
enough to run before every cached answer), so an answer is only stale if
another process's commit was answered and a client asked here before
PostgreSQL got the notification onto this socket. On one host that window is
usually nil and otherwise milliseconds (the listening backend waiting for a
CPU; docs/performance.rst has the measurement); across hosts add the
network's latency. That window is not closed.
"""

from __future__ import annotations

import select
from collections.abc import Callable

import psycopg2
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import txpostgres

_log = Logger()

#: The channel every store notifies and every listener listens on.
CHANNEL = "ocireg_changes"

#: Seconds of silence before the kernel probes the listener's connection,
#: between probes, and probes unanswered before it gives the connection up.
_KEEPALIVE_IDLE = 5
_KEEPALIVE_INTERVAL = 2
_KEEPALIVE_COUNT = 3

#: Seconds an attempt to connect (and LISTEN) may take before it counts as
#: failed; libpq leaves that to the application in asynchronous mode.
CONNECT_TIMEOUT = 5.0

#: Backoff between reconnection attempts.
_FIRST_DELAY = 0.25
_MAX_DELAY = 5.0


class _ListeningConnection(txpostgres.Connection):
    """A connection that hands its notifications to `listener` at once, and its loss."""

    def __init__(self, reactor, listener: ChangeListener) -> None:
        super().__init__(reactor=reactor)
        self._listener = listener

    def doRead(self) -> None:
        try:
            super().doRead()
        except psycopg2.Error as e:
            self.lose(Failure(e))
            return
        self._lose_if_closed()

    def take_in(self) -> None:
        """Read what the socket already holds, without waiting: notifications, or the end."""
        readable = select.poll()
        try:
            readable.register(self._connection.fileno(), select.POLLIN)
        except psycopg2.Error as e:
            self.lose(Failure(e))
            return
        if not readable.poll(0):
            return
        # Reading may meet the end, and libpq then closes the socket: the reactor
        # lets go of it first (epoll refuses to unregister a closed descriptor,
        # and Twisted would keep its number, deaf to the next socket given it).
        self.reactor.removeReader(self)
        try:
            self._connection.poll()
        except psycopg2.Error as e:
            self.connectionLost(Failure(e))
            return
        self.checkForNotifies()
        if self._connection.closed:
            self._lose_if_closed()
        else:
            self.reactor.addReader(self)

    def _lose_if_closed(self) -> None:
        if self._connection is not None and self._connection.closed:
            # psycopg2 saw the end without raising (a FATAL message from the server).
            self.lose(Failure(psycopg2.OperationalError("the server closed the connection")))

    def lose(self, reason: Failure) -> None:
        self.reactor.removeReader(self)
        self.connectionLost(reason)

    def checkForNotifies(self) -> None:
        # txpostgres would hand them to a Cooperator, a reactor turn later:
        # here the cache hears of a change as soon as it is read.
        notifies = self._connection.notifies
        if notifies:
            payloads = [n.payload for n in notifies]
            del notifies[:]
            self._listener._received(payloads)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self._listener._lost(self, reason)


class ChangeListener:
    """LISTENs on `CHANNEL` at `dsn`; calls `changed` for each other store's change.

    `token` is this process's own store's: its notifications are skipped,
    since the store reports its own commits itself, before their callers
    resume. `lost` is called when it stops listening. `where` names the
    database in logs, without a password.
    """

    def __init__(
        self,
        dsn: str,
        reactor,
        token: str,
        changed: Callable[[], object],
        lost: Callable[[], object],
        where: str,
    ) -> None:
        self._dsn = dsn
        self._reactor = reactor
        self._token = token
        self._changed = changed
        self._lost_callback = lost
        self._where = where
        #: The connection listening, or being opened to listen.
        self._connection: _ListeningConnection | None = None
        #: Whether LISTEN is in effect on a live connection: no notification can be missed.
        self._listening = False
        self._closed = False
        #: The next reconnection attempt, while one is scheduled.
        self._retry: IDelayedCall | None = None

    def start(self) -> Deferred:
        """Listen; fails (with psycopg2's error) when the first connection cannot."""
        return Deferred.fromCoroutine(self._listen())

    def catch_up(self) -> bool:
        """Hear the notifications already on the socket; whether nothing can have been missed.

        Never waits: it reads only what the socket holds.
        """
        connection = self._connection
        if not self._listening or connection is None:
            return False
        connection.take_in()
        return self._listening

    async def _listen(self) -> None:
        connection = self._connection = _ListeningConnection(self._reactor, self)
        # Closing it fails the attempt: a server that never answers cannot hold it up.
        timer = self._reactor.callLater(CONNECT_TIMEOUT, connection.close)
        try:
            await connection.connect(
                self._dsn,
                keepalives=1,
                keepalives_idle=_KEEPALIVE_IDLE,
                keepalives_interval=_KEEPALIVE_INTERVAL,
                keepalives_count=_KEEPALIVE_COUNT,
            )
            if self._closed:
                raise CancelledError()
            await connection.runOperation(f"LISTEN {CHANNEL}")
        except BaseException:
            if connection.pollable() is not None:
                connection.close()
            if not timer.active():
                raise psycopg2.OperationalError(
                    f"no answer within {CONNECT_TIMEOUT:g} s"
                ) from None
            raise
        finally:
            if timer.active():
                timer.cancel()
        self._listening = True
        # What was kept meanwhile may predate changes that nobody told us of.
        self._changed()

    def _received(self, payloads: list[str]) -> None:
        if any(payload != self._token for payload in payloads):
            self._changed()

    def _lost(self, connection: _ListeningConnection, reason: Failure) -> None:
        if connection is not self._connection or not self._listening:
            # Not listening yet: the attempt to listen fails and says so itself.
            return
        self._listening = False
        self._connection = None
        # psycopg2 keeps a broken connection's resources until it is closed.
        connection.pollable().close()
        if self._closed:
            return
        _log.warn(
            "stopped hearing of other processes' changes to {database} ({error}); "
            "reading without the read cache until listening again",
            database=self._where,
            error=" ".join(str(reason.value).split()) or reason.type.__name__,
        )
        self._lost_callback()
        self._schedule(_FIRST_DELAY)

    def _schedule(self, delay: float) -> None:
        self._retry = self._reactor.callLater(delay, self._reconnect, delay)

    def _reconnect(self, delay: float) -> None:
        self._retry = None
        d = Deferred.fromCoroutine(self._listen())

        def listening(_: None) -> None:
            _log.info("hearing of other processes' changes to {database} again",
                      database=self._where)

        def failed(failure: Failure) -> None:
            if not self._closed:
                self._schedule(min(delay * 2, _MAX_DELAY))

        d.addCallbacks(listening, failed)

    def retry_now(self) -> None:
        """Try to listen again now, not when the backoff says: the database answers again."""
        if self._retry is not None and self._retry.active():
            self._retry.reset(0)

    def close(self) -> None:
        """Stop listening, quietly."""
        self._closed = True
        self._listening = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
