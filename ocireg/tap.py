"""`twistd ocireg`: command-line options and the service maker."""

from __future__ import annotations

from twisted.application.service import IService
from twisted.python import usage

from ocireg.config import Config, ConfigError
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
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """A Twisted endpoint to serve on, e.g. tcp:5000:interface=127.0.0.1 (repeatable)."""
        self["listen"].append(description)

    opt_l = opt_listen

    def postOptions(self) -> None:
        self["listeners"] = ()
        try:
            if self["worker"] is not None:
                # A worker runs on its parent's settings and sockets (see ocireg.workers).
                self["listeners"] = parse_listeners(self["worker"])
                self["config_object"] = config_from_environment()
                return
            self["config_object"] = Config.load(
                self["config"],
                listen=self["listen"] or None,
                data_dir=self["data-dir"],
                database=self["database"],
                workers=self["workers"],
            )
        except (ConfigError, ValueError) as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options) -> IService:
    return RegistryService(options["config_object"], listeners=options["listeners"])

