"""Several ocireg processes on one host, serving the same listening sockets.

The first process (the parent) opens every listening socket as usual, then
starts `workers - 1` children with those sockets as inherited file
descriptors; each child adopts them (`IReactorSocket.adoptStreamPort`) and
accepts connections on them alongside the parent. The kernel hands each new
connection to one of the processes waiting in accept(), so a busy process
simply takes fewer. Sharing the parent's sockets (rather than SO_REUSEPORT)
works for any port, including `tcp:0`, needs nothing of the endpoint
parser, and keeps one owner for a Unix socket's path.

The children share nothing else with the parent but the database and the
blob store: every piece of state that two requests of one push need lives
there (upload sessions in the metadata store, upload bytes in the blob
store), so a request may land on any process.

A child learns its settings from the parent (as JSON in an environment
variable, not on the command line: a database URL may hold a password), and
holds the read end of a pipe (the lifeline) whose write end only the parent
has: when the parent dies, even by SIGKILL, the pipe reads end-of-file and
the child stops.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Sequence

import attrs
from twisted.application.service import Service
from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredList, fail, gatherResults, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IReadDescriptor, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from ocireg.config import Config
from ocireg.serving import ListeningService

_log = Logger()

#: The environment variable that carries a child's settings.
CONFIG_VARIABLE = "OCIREG_WORKER_CONFIG"

#: The child's end of the lifeline pipe.
LIFELINE_FD = 3

#: Seconds a child has to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0

#: Longest wait before a child that keeps dying is started again.
MAX_RESTART_DELAY = 30.0

_FAMILIES = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}


@attrs.frozen
class Listener:
    """A listening socket handed to a child: its descriptor there, and its address family."""

    fd: int
    family: str

    def __str__(self) -> str:
        return f"{self.fd}:{self.family}"

    @classmethod
    def parse(cls, text: str) -> Listener:
        fd, _, family = text.partition(":")
        if not fd.isdigit() or family not in _FAMILIES:
            raise ValueError(f"not a listener FD:FAMILY ({'/'.join(_FAMILIES)}): {text!r}")
        return cls(int(fd), family)


def parse_listeners(text: str) -> tuple[Listener, ...]:
    """The comma-separated `FD:FAMILY` list of a child's `--worker` option."""
    return tuple(Listener.parse(part) for part in text.split(",") if part)


def socket_family(port) -> str:
    """The family name of a listening Twisted port; ValueError for ports a child cannot adopt."""
    if isinstance(getattr(port, "factory", None), TLSMemoryBIOFactory):
        # A child would adopt the socket but not the TLS layer: it would speak plain HTTP.
        raise ValueError(f"{port!r} serves TLS: workers cannot share ssl endpoints")
    sock = getattr(port, "socket", None)
    if sock is None:
        raise ValueError(f"{port!r} has no socket to share with workers")
    for name, family in _FAMILIES.items():
        if sock.family == family:
            return name
    raise ValueError(f"{port!r} is not a TCP or Unix socket")


@implementer(IStreamServerEndpoint)
class InheritedEndpoint:
    """The listening socket `listener` inherited from the parent, as an endpoint."""

    def __init__(self, reactor, listener: Listener) -> None:
        self._reactor = reactor
        self._listener = listener

    def listen(self, factory: protocol.Factory) -> Deferred:
        fd = self._listener.fd
        try:
            port = self._reactor.adoptStreamPort(fd, _FAMILIES[self._listener.family], factory)
        except Exception:
            return fail()
        # The reactor listens on a duplicate: close ours.
        os.close(fd)
        return succeed(port)


def config_to_environment(config: Config) -> str:
    return json.dumps(attrs.asdict(config))


def config_from_environment(environ: dict[str, str] | None = None) -> Config:
    text = (os.environ if environ is None else environ).get(CONFIG_VARIABLE)
    if not text:
        raise ValueError(f"a worker needs its settings in ${CONFIG_VARIABLE}")
    return Config.load(None, **json.loads(text))


@implementer(IReadDescriptor)
class Lifeline(Service):
    """The child's end of the pipe from its parent: end-of-file means the parent is gone."""

    name = "lifeline"

    def __init__(self, reactor, fd: int = LIFELINE_FD) -> None:
        self._reactor = reactor
        self._fd = fd
        os.set_blocking(fd, False)

    def startService(self) -> None:
        super().startService()
        self._reactor.addReader(self)

    def stopService(self) -> None:
        super().stopService()
        if self._fd >= 0:
            self._reactor.removeReader(self)

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "ocireg-lifeline"

    def doRead(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return None
        if not data:
            return self._parent_gone()
        return None

    def connectionLost(self, reason: Failure) -> None:
        # The reactor reports a hung-up pipe here rather than through doRead.
        self._parent_gone()

    def _parent_gone(self) -> None:
        if self._fd < 0:
            return
        self._reactor.removeReader(self)
        os.close(self._fd)
        self._fd = -1
        _log.warn("the parent ocireg process is gone: stopping this worker")
        if self._reactor.running:
            self._reactor.stop()


class _Child(protocol.ProcessProtocol):
    def __init__(self, pool: WorkerPool, number: int) -> None:
        self.pool = pool
        self.number = number
        self.ended: Deferred = Deferred()

    def connectionMade(self) -> None:
        _log.info("worker {number} started (pid {pid})", number=self.number,
                  pid=self.transport.pid)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.pool._ended(self, reason)


class WorkerPool(Service):
    """Keeps `count` child processes serving the ports of the parent's `listening` services.

    The children start once every one of those listens.
    """

    name = "workers"

    def __init__(
        self, reactor, config: Config, listening: Sequence[ListeningService], count: int
    ) -> None:
        self._reactor = reactor
        self._config = config
        self._listening = tuple(listening)
        self._ports: list = []
        self._count = count
        self._children: dict[int, _Child] = {}
        self._failures: dict[int, int] = {}
        self._restarts: dict[int, object] = {}
        #: Children stopped on purpose by `replace`: their end is no failure.
        self._retiring: set[_Child] = set()

    def _command(self) -> tuple[list[str], dict[int, int | str]]:
        child_fds: dict[int, int | str] = {0: 0, 1: 1, 2: 2, LIFELINE_FD: "w"}
        listeners = []
        for i, port in enumerate(self._ports):
            fd = LIFELINE_FD + 1 + i
            child_fds[fd] = port.fileno()
            listeners.append(str(Listener(fd, socket_family(port))))
        argv = [
            # `twist`, not `twistd`: a worker needs no pidfile and never daemonises.
            sys.executable, "-m", "twisted", "--log-format", "text",
            "ocireg", "--worker", ",".join(listeners),
        ]
        return argv, child_fds

    def startService(self) -> None:
        super().startService()
        ports = gatherResults([s.listening() for s in self._listening], consumeErrors=True)
        # A port that does not listen fails the whole start, which says why.
        ports.addCallbacks(self._spawn_all, lambda failure: None)

    def _spawn_all(self, ports: list) -> None:
        if not self.running:
            return
        self._ports = ports
        for number in range(1, self._count):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        self._restarts.pop(number, None)
        argv, child_fds = self._command()
        env = dict(os.environ)
        env[CONFIG_VARIABLE] = config_to_environment(self._config)
        child = _Child(self, number)
        self._children[number] = child
        self._reactor.spawnProcess(child, argv[0], argv, env=env, childFDs=child_fds)

    def replace(self, config: Config) -> Deferred:
        """Restart the workers one at a time on `config` (a reload's new settings).

        A worker's settings are fixed when it starts, so a reload reaches the
        workers by replacing them; each drains its requests as on any stop,
        and the others serve meanwhile.
        """
        self._config = config
        return Deferred.fromCoroutine(self._replace_each())

    async def _replace_each(self) -> None:
        for number in sorted(self._children):
            child = self._children.get(number)
            if child is None or not self.running:
                continue
            self._retiring.add(child)
            _signal(child, signal.SIGTERM)
            killer = self._reactor.callLater(STOP_TIMEOUT, _signal, child, signal.SIGKILL)
            await child.ended
            _cancel_call(None, killer)
            if self.running:
                self._spawn(number)
                _log.info("worker {number} restarted with the reloaded settings", number=number)

    def _ended(self, child: _Child, reason: Failure) -> None:
        if self._children.get(child.number) is not child:
            return
        del self._children[child.number]
        if child in self._retiring:
            self._retiring.discard(child)
            return
        if not self.running:
            return
        failures = self._failures.get(child.number, 0) + 1
        self._failures[child.number] = failures
        delay = min(MAX_RESTART_DELAY, 0.5 * 2 ** (failures - 1))
        _log.error(
            "worker {number} ended unexpectedly ({reason}); restarting it in {delay:.1f} s",
            number=child.number, reason=reason.getErrorMessage(), delay=delay,
        )
        self._restarts[child.number] = self._reactor.callLater(delay, self._spawn, child.number)

    def stopService(self) -> Deferred:
        super().stopService()
        for call in self._restarts.values():
            call.cancel()
        self._restarts.clear()
        waits = []
        for child in list(self._children.values()):
            waits.append(child.ended)
            _signal(child, signal.SIGTERM)
            killer = self._reactor.callLater(STOP_TIMEOUT, _signal, child, signal.SIGKILL)
            child.ended.addBoth(_cancel_call, killer)
        return DeferredList(waits)


def _signal(child: _Child, signum: int) -> None:
    try:
        child.transport.signalProcess(signum)
    except (ProcessExitedAlready, OSError):
        pass  # It ended on its own meanwhile.


def _cancel_call(result: object, call) -> object:
    if call.active():
        call.cancel()
    return result
