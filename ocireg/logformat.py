"""Log events as twisted.logger's classic text lines, made cheaply.

The text log writes one access-log event per request, and twisted's own
formatting (`formatEventAsClassicLogText`) parses the event's format string
and works out the local time zone again for every event, a large share
of the reactor's time under load (docs/performance.rst). The lines here
are the same, byte for byte; only the work is remembered: the parse of
each format string, and the time stamp of the current second.

Events this does not handle plainly (a failure to append, a field that
calls, indexes or looks up an attribute, a field the event lacks, legacy
flattened events) go to twisted's formatter.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from functools import lru_cache
from typing import IO

from twisted.logger import (
    FileLogObserver,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)

#: One piece of a parsed format: literal text, then a field (or None) with
#: its conversion and format spec.
_Piece = tuple[str, str | None, str | None, str]


@lru_cache(maxsize=512)
def _pieces(log_format: str) -> tuple[_Piece, ...] | None:
    """`log_format` parsed, or None when a field is more than a plain name."""
    try:
        parsed = list(string.Formatter().parse(log_format))
    except ValueError:
        return None
    pieces = []
    for literal, field, spec, conversion in parsed:
        if field is not None and (
            not field.isidentifier() or "{" in (spec or "") or conversion not in (None, "r", "s")
        ):
            return None
        pieces.append((literal, field, conversion, spec or ""))
    return tuple(pieces)


def _plain_text(event: dict, pieces: tuple[_Piece, ...]) -> str | None:
    out = []
    for literal, field, conversion, spec in pieces:
        out.append(literal)
        if field is None:
            continue
        if field not in event:
            return None
        value = event[field]
        if conversion == "r":
            value = repr(value)
        elif conversion == "s":
            value = str(value)
        out.append(format(value, spec))
    return "".join(out)


class _SecondStamps:
    """`formatTime(when, time_format)`, remembered for the last whole second asked."""

    def __init__(self, time_format: str) -> None:
        self._format = time_format
        self._second: int | None = None
        self._stamp = ""

    def __call__(self, when: float | None) -> str:
        if when is None:
            return formatTime(None, self._format)
        second = int(when)
        if second != self._second:
            # The format has no fraction of a second: one stamp serves the whole second.
            self._stamp = formatTime(second, self._format)
            self._second = second
        return self._stamp


def event_text(event: dict) -> str:
    """The event's text, as `twisted.logger.formatEvent` makes it."""
    log_format = event.get("log_format")
    if isinstance(log_format, str) and "log_flattened" not in event:
        pieces = _pieces(log_format)
        try:
            text = _plain_text(event, pieces) if pieces is not None else None
        except Exception:
            # A value that will not format: twisted's formatter says so in the text.
            text = None
        if text is not None:
            return text
    return formatEvent(event)


def classic_text(time_format: str = timeFormatRFC3339) -> Callable[[dict], str | None]:
    """A function formatting an event as `formatEventAsClassicLogText` does."""
    stamp = _SecondStamps(time_format)

    def text(event: dict) -> str | None:
        if "log_failure" in event:
            return formatEventAsClassicLogText(event, formatTime=stamp)
        body = event_text(event)
        if not body:
            return None
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
        body = body.replace("\n", "\n\t")
        return f"{stamp(event.get('log_time'))} [{system}] {body}\n"

    return text


def text_file_observer(stream: IO[str]) -> FileLogObserver:
    """What `twisted.logger.textFileLogObserver(stream)` is, with the cheaper formatting."""
    return FileLogObserver(stream, classic_text())
