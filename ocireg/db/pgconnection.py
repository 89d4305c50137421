"""One connection of the PostgreSQL store's pool, and how its death is told.

A `Connection` is a txpostgres connection whose `Detector` marks it dead as
soon as a statement (or the reactor, for an idle connection) finds it so.
The detector does not reconnect it by itself: it tells the store, which
reconnects its dead connections together (see `ocireg.db.postgresql`).
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg2
import psycopg2.extensions
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import reconnection, txpostgres

_log = Logger()


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


def is_connection_failure(failure: Failure) -> bool:
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


class Connection(txpostgres.Connection):
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


class Detector(reconnection.DeadConnectionDetector):
    """Marks its connection dead on a connection failure, and asks for a reconnection.

    `tracking()` says whether deaths count: not while the store opens (its
    start fails instead) nor once it closes (it closes its connections
    itself). `reconnect()` asks the store to reconnect; `closing()` says
    whether the store is closing, to keep the log quiet then. `database`
    names the server in the log.
    """

    def __init__(
        self,
        reactor,
        database: str,
        tracking: Callable[[], bool],
        closing: Callable[[], bool],
        reconnect: Callable[[], object],
    ) -> None:
        super().__init__(deathChecker=self._dead, reactor=reactor)
        self._database = database
        self._tracking = tracking
        self._closing = closing
        self._reconnect = reconnect
        self.addRecoveryHandler(self._recovered)

    def _dead(self, failure: Failure) -> bool:
        return self._tracking() and is_connection_failure(failure)

    def startReconnecting(self, f: Failure) -> None:
        _log.warn(
            "lost a connection to {database} ({error}): reconnecting",
            database=self._database,
            error=str(f.value).strip() or f.type.__name__,
        )
        self._reconnect()

    def _recovered(self) -> None:
        if not self._closing():
            _log.info("reconnected to {database}", database=self._database)
