"""`twistd ocireg`: command-line options and the service maker."""

from __future__ import annotations

import os
import sys

from prometheus_client import CollectorRegistry
from twisted.application.service import IService
from twisted.python import usage

from ocireg import version
from ocireg.config import Config, ConfigError
from ocireg.daemon import Daemon
from ocireg.logoutput import LogOutput
from ocireg.metrics import RegistryMetrics
from ocireg.notify import SystemdNotifier
from ocireg.reload import Reloader
from ocireg.requestlog import RequestLog
from ocireg.service import RegistryService
from ocireg.workers import config_from_environment, parse_listeners


class Options(usage.Options):
    synopsis = (
        "[--listen ENDPOINT]... [--data-dir DIR] [--config FILE] [--database URL] "
        "[--workers N]"
    )
    longdesc = (
        "Serve a container registry where every push is a new repository version. "
        "Command-line options override the config file; with neither, ocireg serves "
        "tcp:5000 with its data in ./ocireg-data."
    )
    optParameters = [
        ["data-dir", "d", None, "Where blobs, uploads and the metadata database live."],
        ["config", "c", None, "A TOML config file (see etc/ocireg.toml)."],
        ["database", None, None,
         "The metadata database: postgresql://user@host:port/name (default: SQLite in the "
         "data directory)."],
        ["workers", "w", None,
         "Processes serving the same sockets (default 1; more than 1 needs PostgreSQL)."],
        ["worker", None, None,
         "Internal: run as a worker of a parent ocireg, on the inherited sockets FD:FAMILY,..."],
        ["log-level", None, None, "debug, info, warn, error or critical (default info)."],
        ["log-format", None, None,
         "text or json (one JSON object per line); under twistd, not python -m twisted."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["admin-listen"] = []

    def opt_admin_listen(self, description: str) -> None:
        """An endpoint serving only /healthz, /readyz and /metrics (repeatable)."""
        self["admin-listen"].append(description)

    def opt_listen(self, description: str) -> None:
        """A Twisted endpoint to serve on, e.g. tcp:5000:interface=127.0.0.1 (repeatable)."""
        self["listen"].append(description)

    opt_l = opt_listen

    def opt_version(self) -> None:
        """Print ocireg's version (and Twisted's) and exit."""
        from twisted import copyright

        sys.stdout.write(f"ocireg {version()} (Twisted {copyright.version})\n")
        raise SystemExit(0)

    def postOptions(self) -> None:
        self["listeners"] = ()
        try:
            if self["worker"] is not None:
                # A worker runs on its parent's settings and sockets (see ocireg.workers).
                self["listeners"] = parse_listeners(self["worker"])
                self["config_object"] = config_from_environment()
                return
            self["config_object"] = self.load_config()
        except (ConfigError, ValueError) as e:
            # A bad setting, not a misused option: say which, without the
            # usage text twistd prints around a UsageError.
            raise SystemExit(f"ocireg: {e}") from None

    def load_config(self) -> Config:
        """The settings of the config file and the command line; read again on each reload."""
        if self["worker"] is not None:
            return self["config_object"]
        return Config.load(
            self["config"],
            listen=self["listen"] or None,
            data_dir=self["data-dir"],
            database=self["database"],
            workers=self["workers"],
            admin_listen=self["admin-listen"] or None,
            log_level=self["log-level"],
            log_format=self["log-format"],
        )


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    config: Config = options["config_object"]
    worker = bool(options["listeners"])
    metrics = RegistryMetrics(CollectorRegistry(), config.metrics_repositories)
    log_output = LogOutput(config.log_format, config.log_level, sys.stdout)
    service = RegistryService(
        config, reactor, listeners=options["listeners"], metrics=metrics,
        request_log=RequestLog(written=log_output.writes),
    )
    # Only the main process speaks to the service manager; systemd ignores
    # (and complains of) notifications from other processes.
    notifier = SystemdNotifier(None if worker else os.environ.get("NOTIFY_SOCKET"))
    return Daemon(service, notifier, log_output, Reloader(options.load_config, config), reactor)

