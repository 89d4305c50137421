"""ocireg as a system service: readiness, reload on SIGHUP, stop, log output, exit status.

`Daemon` wraps the `RegistryService` that `twistd ocireg` runs. It tells the
service manager `READY=1` once the registry service says its stores are open
and its ports listen, `STOPPING=1` when the stop begins (twistd turns SIGTERM
into a reactor stop, which stops the services: the registry service then
drains its requests), and `RELOADING=1` around a SIGHUP reload. It ends the
process when the start fails, with status 1, so that systemd sees the failure.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocireg.config import masked
from ocireg.logoutput import JSONValue, LogOutput
from ocireg.notify import SystemdNotifier
from ocireg.reload import Reloader, ReloadResult
from ocireg.service import RegistryService

_log = Logger()


class Daemon(MultiService):
    """Runs `service`, reporting to `notifier`, logging through `log_output`."""

    def __init__(
        self,
        service: RegistryService,
        notifier: SystemdNotifier,
        log_output: LogOutput,
        reloader: Reloader,
        reactor,
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        super().__init__()
        self._service = service
        self._notifier = notifier
        self._log_output = log_output
        self._reloader = reloader
        self._reactor = reactor
        self._exit = exit
        self._previous_sighup: object = None
        service.setServiceParent(self)
        reloader.register("log_level", self._apply_log_level)
        for setting, hook in service.reload_hooks().items():
            reloader.register(setting, hook)

    def setServiceParent(self, parent) -> None:
        # twistd asks the application for its log observer after makeService
        # and before it starts anything: this is the moment to offer ours.
        self._log_output.attach(parent)
        super().setServiceParent(parent)

    def startService(self) -> None:
        _log.info(
            "ocireg starting (pid {pid}) with settings {settings}",
            pid=os.getpid(),
            settings=JSONValue(masked(self._reloader.running)),
        )
        if hasattr(signal, "SIGHUP"):
            self._previous_sighup = signal.signal(signal.SIGHUP, self._sighup)
        super().startService()
        self._service.ready.addCallbacks(self._ready, self._failed)

    def _ready(self, ports: list) -> None:
        addresses = ", ".join(str(p.getHost()) for p in ports)
        self._notifier.ready(f"serving on {addresses}")
        _log.info("ocireg is ready")

    def _failed(self, failure: Failure) -> None:
        if failure.check(CancelledError):
            # Stopped before it was ready: the stop is under way, and no failure.
            return
        # The registry service has logged why. twistd itself would exit 0,
        # and systemd would not know the start failed.
        self._reactor.addSystemEventTrigger("after", "shutdown", self._exit_failed)
        if self._reactor.running:
            self._reactor.stop()
        else:
            # twistd starts the services before the reactor runs: a failure
            # before the registry service's first await lands here, and a stop
            # must wait for the reactor to run.
            self._reactor.callWhenRunning(self._reactor.stop)

    def _exit_failed(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self._exit(1)

    def _sighup(self, signum: int, frame: object) -> None:
        # A signal handler may run between any two bytecodes of the reactor
        # thread: do the work in the reactor's own time.
        self._reactor.callFromThread(self.reload)

    def reload(self) -> ReloadResult:
        """Read the configuration again and apply what can change while running."""
        self._notifier.reloading()
        try:
            result = self._reloader.reload()
        finally:
            self._notifier.ready("reloaded")
        if result.applied:
            self._service.replace_workers(self._reloader.running).addErrback(
                lambda f: _log.failure("restarting the workers on the reloaded settings", f)
            )
        return result

    def _apply_log_level(self, old: object, new: object) -> str:
        self._log_output.set_level(str(new))
        return f"log level {old} -> {new}"

    def stopService(self) -> Deferred:
        self._notifier.stopping("stopping: finishing the requests in flight")
        _log.info("ocireg stopping")
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)  # type: ignore[arg-type]
            self._previous_sighup = None
        return super().stopService()
