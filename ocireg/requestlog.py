"""The access log: one twisted.logger event per request.

The event's text is a common-log-style line (the observer's timestamp takes
the place of CLF's date); its fields (method, path, status, bytes, duration,
user, repository) are kept separately, so the JSON log format writes them as
fields rather than as one string.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger, LogLevel

from ocireg.api.observe import RequestRecord

_FORMAT = (
    '{client} - {user} "{method} {path}" {status} {bytes_sent} '
    "{duration_ms}ms in={bytes_received} repository={repository}"
)


class RequestLog:
    """A `RequestObserver` that logs each request to `log`.

    `written(level, namespace)` tells whether the log output writes events
    of that level and namespace; when it does not, no event is built (a
    dozen fields per request, which showed in profiles at log level warn).
    """

    def __init__(
        self,
        log: Logger | None = None,
        written: Callable[[LogLevel, str], bool] | None = None,
    ) -> None:
        self._log = log if log is not None else Logger(namespace="ocireg.access")
        self._written = written

    def upload_started(self) -> None:
        pass

    def request_done(self, record: RequestRecord) -> None:
        if self._written is not None and not self._written(LogLevel.info, self._log.namespace):
            return
        self._log.info(
            _FORMAT if record.completed else _FORMAT + " (connection lost)",
            access=True,
            client=record.client,
            user=record.user or "-",
            method=record.method,
            path=record.path,
            route=record.route,
            status=record.status if record.completed else "-",
            bytes_sent=record.sent,
            bytes_received=record.received,
            duration_ms=round(record.duration * 1000, 1),
            repository=record.repository or "-",
            completed=record.completed,
        )
