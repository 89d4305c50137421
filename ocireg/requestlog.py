"""The access log: one twisted.logger event per request.

The event's text is the request in the Combined Log Format (client, user,
[time], request line, status, size, referer, user agent), followed by the
duration, the bytes received and the repository. Its fields are kept
separately too, so the JSON log format writes them as fields rather than as
one string; the pieces only the text needs are private (`_` first).

Health probes that succeed are logged at debug: a probe every few seconds
would otherwise be most of the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from twisted.logger import Logger, LogLevel

from ocireg.api.observe import RequestRecord

_FORMAT = (
    '{client} - {_user} [{_time}] "{_request}" {status} {_size} "{_referer}" "{_user_agent}" '
    "{duration_ms}ms in={bytes_received} repository={repository}"
)

#: Routes that load balancers and service managers call over and over.
_PROBES = frozenset({"/healthz", "/readyz"})


def quoted(text: str) -> str:
    """`text` as it can stand between the double quotes of a log line.

    Quotes and backslashes get a backslash, control and non-ASCII
    characters their \\xHH code, as Apache's log does: a hostile path or user
    agent cannot end the field or start a new line.
    """
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        # What clients send nearly always: nothing to escape.
        return text
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif " " <= c <= "~":
            out.append(c)
        else:
            out.extend(f"\\x{b:02x}" for b in c.encode("utf-8"))
    return "".join(out)


class _ClfTime:
    """The Common Log Format's time (`07/Dec/2026:23:35:42 +0100`, local), per whole second."""

    def __init__(self) -> None:
        self._second: int | None = None
        self._text = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._text = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
            self._second = second
        return self._text


class RequestLog:
    """A `RequestObserver` that logs each request to `log`.

    `written(level, namespace)` tells whether the log output writes events
    of that level and namespace; when it does not, no event is built (a
    dozen fields per request, which showed in profiles at log level warn).
    `clock` gives the wall-clock time, from which the request's start is
    worked out for its [time].
    """

    def __init__(
        self,
        log: Logger | None = None,
        written: Callable[[LogLevel, str], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._log = log if log is not None else Logger(namespace="ocireg.access")
        self._written = written
        self._clock = clock
        self._clf_time = _ClfTime()

    def upload_started(self) -> None:
        pass

    def request_done(self, record: RequestRecord) -> None:
        level = LogLevel.info
        if record.route in _PROBES and record.completed and record.status < 400:
            level = LogLevel.debug
        if self._written is not None and not self._written(level, self._log.namespace):
            return
        self._log.emit(
            level,
            _FORMAT if record.completed else _FORMAT + " (connection lost)",
            access=True,
            client=record.client,
            user=record.user or "-",
            method=record.method,
            path=record.path,
            protocol=record.protocol,
            route=record.route,
            status=record.status if record.completed else "-",
            bytes_sent=record.sent,
            bytes_received=record.received,
            duration_ms=round(record.duration * 1000, 1),
            repository=record.repository or "-",
            user_agent=record.user_agent,
            referer=record.referer,
            completed=record.completed,
            # CLF's user is the one field not in quotes: a space would split it.
            _user=quoted(record.user).replace(" ", "\\x20") if record.user else "-",
            _time=self._clf_time(self._clock() - record.duration),
            _request=quoted(f"{record.method} {record.path} {record.protocol}"),
            _size=record.sent or "-",
            _referer=quoted(record.referer) if record.referer else "-",
            _user_agent=quoted(record.user_agent) if record.user_agent else "-",
        )
