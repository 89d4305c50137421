"""Serving a site on endpoints: a service per listening endpoint, and the drain on stop.

`ListeningService` is Twisted's `StreamServerEndpointService` with what the
daemon needs of it: a failure to listen is a `ConfigError` naming the
setting, and anyone may wait for the port (the readiness of the whole tree,
the worker processes that share the socket). `Draining` ends the requests in
flight when the tree stops: attached before the listening services, it stops
after them, so no new request arrives while it waits.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocireg.api.site import RegistrySite
from ocireg.config import ConfigError

_log = Logger()


def reason(e: BaseException) -> str:
    """The exception's message on one line, or its type's name when it has none."""
    return " ".join(str(e).split()) or type(e).__name__


def parse_endpoint(reactor, setting: str, description: str) -> IStreamServerEndpoint:
    """The server endpoint `description` of `setting`; a ConfigError naming the setting if bad."""
    try:
        return endpoints.serverFromString(reactor, description)
    except IndexError:
        # Twisted's systemd: parser indexes the sockets systemd passed.
        raise ConfigError(
            f"setting {setting!r}: endpoint {description!r} names a socket that systemd did "
            "not pass (is the .socket unit active?)"
        ) from None
    except Exception as e:
        # Whatever the parser raises is about the description: a bad value,
        # or a TLS key or certificate file that is missing or unreadable.
        raise ConfigError(
            f"setting {setting!r}: bad endpoint {description!r}: {reason(e)}"
        ) from None


class ListeningService(Service):
    """Listens on `endpoint` with `factory` while running; `description` of `setting` says where.

    `listening()` fires with the port, or fails with a ConfigError naming
    the setting when the endpoint cannot listen.
    """

    def __init__(
        self, setting: str, description: str, endpoint: IStreamServerEndpoint, factory: Factory
    ) -> None:
        self.setting = setting
        self.description = description
        self._endpoint = endpoint
        self._factory = factory
        self.port: IListeningPort | None = None
        self._outcome: IListeningPort | Failure | None = None
        self._waiting: list[Deferred] = []

    def startService(self) -> None:
        super().startService()
        d = self._endpoint.listen(self._factory)
        d.addCallbacks(self._listening, self._refused)

    def _listening(self, port: IListeningPort) -> None:
        if self.running:
            self.port = port
        else:
            # Stopped while the endpoint was still setting up.
            port.stopListening()
        self._settle(port)

    def _refused(self, failure: Failure) -> None:
        if failure.check(CannotListenError):
            failure = Failure(ConfigError(
                f"setting {self.setting!r}: cannot listen on {self.description!r}: "
                f"{failure.value.socketError}"
            ))
        self._settle(failure)

    def _settle(self, outcome: IListeningPort | Failure) -> None:
        self._outcome = outcome
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)

    def listening(self) -> Deferred:
        """A new Deferred of the listening port, for each who asks."""
        if self._outcome is None:
            d: Deferred = Deferred()
            self._waiting.append(d)
            return d
        if isinstance(self._outcome, Failure):
            return fail(self._outcome)
        return succeed(self._outcome)

    def stopService(self) -> Deferred:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        return maybeDeferred(port.stopListening)


class Draining(Service):
    """On stop, lets `site`'s requests in flight finish, for up to `timeout` seconds."""

    name = "drain"

    def __init__(self, site: RegistrySite, timeout: float) -> None:
        self._site = site
        self._timeout = timeout

    def stopService(self) -> Deferred:
        super().stopService()
        return Deferred.fromCoroutine(self._drain())

    async def _drain(self) -> None:
        in_flight = self._site.in_flight
        if in_flight:
            _log.info("waiting up to {timeout} s for {n} requests in flight",
                      timeout=self._timeout, n=in_flight)
        cut_off = await self._site.drain(self._timeout)
        if cut_off:
            _log.warn("cut off {n} requests still in flight after {timeout} s",
                      n=cut_off, timeout=self._timeout)
