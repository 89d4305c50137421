"""Telling the service manager how the daemon is doing: systemd's notify protocol.

systemd passes `$NOTIFY_SOCKET`, a unix datagram socket (a path, or `@name`
in the abstract namespace); each datagram is newline-separated `KEY=value`
assignments such as `READY=1` or `STOPPING=1`. With no such variable (run
by hand, or under another supervisor) every notification is dropped.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Mapping

from twisted.logger import Logger

_log = Logger()


class SystemdNotifier:
    """Sends notifications to the socket at `address`; does nothing when it is None."""

    def __init__(self, address: str | None) -> None:
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address or None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> SystemdNotifier:
        return cls(environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **state: str | int) -> bool:
        """Send `KEY=value` for each of `state`; whether the service manager got it."""
        if self._address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in state.items()).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            # Non-blocking, so a service manager that stopped reading can
            # never stall the reactor thread: the notification is lost instead.
            sock.setblocking(False)
            try:
                sock.sendto(message, self._address)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.ENOENT, errno.ECONNREFUSED):
                    raise
                _log.warn("could not notify the service manager: {error}", error=e.strerror)
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status, MAINPID=os.getpid())

    def reloading(self) -> bool:
        # systemd ≥ 253 (Type=notify-reload) wants the monotonic clock with it.
        return self.notify(
            RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        )

    def stopping(self, status: str) -> bool:
        return self.notify(STOPPING=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.notify(STATUS=status)
