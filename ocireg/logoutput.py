"""Where ocireg's log goes, in which format, from which level up.

twistd picks its log observer from its own `--logger` option if given, else
from the application's `ILogObserver` component, else its `--logfile`. ocireg
sets that component (`attach`), so `twistd -n ocireg --log-format json`
writes JSON lines and `--log-level` applies, while an explicit twistd
`--logger` still wins. The level filter is kept here so that a reload
(SIGHUP) can change it in place.

`twist` (`python -m twisted`) ignores application components: under it, its
own `--log-format` and `--log-level` govern the output.
"""

from __future__ import annotations

import json
import time
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
)
from zope.interface import implementer

from ocireg.logformat import event_text, text_file_observer

#: The level names a config may use, least severe first.
LEVELS = ("debug", "info", "warn", "error", "critical")
FORMATS = ("text", "json")

#: Keys of events bridged from twisted.python.log that repeat what the record holds.
_LEGACY_KEYS = frozenset({"message", "format", "isError", "system", "time", "why", "failure"})


class JSONValue(dict):
    """A log field holding a JSON object: JSON in the text of an event, an object in JSON lines.

    `_log.info("settings {settings}", settings=JSONValue(...))` reads as
    `settings {"a": 1}` in the text log, and the JSON log format writes
    `"settings": {"a": 1}` beside the message, for a log shipper to query.
    """

    def __str__(self) -> str:
        return json.dumps(self, default=str)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


@implementer(ILogObserver)
class JSONLinesObserver:
    """Writes each event as one JSON object on one line of `stream`.

    The object has `time` (ISO 8601, UTC), `level`, `namespace` and `message`
    (the event's text), plus the event's own fields whose values are plain
    JSON (a request's method, path, status...) or a `JSONValue`, and
    `traceback` for failures. Fields named with a leading `_` are pieces of
    the text only, and left out.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(self, event: dict) -> None:
        timestamp = event.get("log_time") or time.time()
        level = event.get("log_level")
        record: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
            + f".{int(timestamp % 1 * 1000):03d}Z",
            "level": getattr(level, "name", "info"),
            "namespace": event.get("log_namespace"),
            "message": event_text(event),
        }
        for key, value in event.items():
            if key.startswith(("log_", "_")) or key in _LEGACY_KEYS or key in record:
                continue
            if value is None or isinstance(value, str | int | float | bool | JSONValue):
                record[key] = value
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        self._stream.write(json.dumps(record, default=str) + "\n")
        self._stream.flush()


class LogOutput:
    """The log observer for `format` on `stream`, passing events from `level` up."""

    def __init__(self, format: str, level: str, stream: IO[str]) -> None:
        if format not in FORMATS:
            raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
        self._predicate = LogLevelFilterPredicate(defaultLogLevel=_level(level))
        self._level = level
        output = JSONLinesObserver(stream) if format == "json" else text_file_observer(stream)
        self.observer = FilteringLogObserver(output, [self._predicate])

    @property
    def level(self) -> str:
        return self._level

    def writes(self, level: LogLevel, namespace: str) -> bool:
        """Whether an event of `level` in `namespace` gets past the level filter."""
        return level >= self._predicate.logLevelForNamespace(namespace)

    def set_level(self, level: str) -> None:
        self._predicate.setLogLevelForNamespace("", _level(level))
        self._level = level

    def attach(self, application: object) -> bool:
        """Make this twistd's log observer for `application`; False if it takes no components."""
        set_component = getattr(application, "setComponent", None)
        if set_component is None:
            return False
        set_component(ILogObserver, self.observer)
        return True


def _level(name: str) -> LogLevel:
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}")
    return LogLevel.levelWithName(name)
