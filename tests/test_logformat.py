"""ocireg's text log lines are twisted's classic lines, byte for byte."""

from __future__ import annotations

import io
import time

import pytest
from twisted.logger import LogLevel, formatEvent, formatEventAsClassicLogText
from twisted.python.failure import Failure

from ocireg.logformat import classic_text, event_text, text_file_observer


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _failure() -> Failure:
    try:
        raise ValueError("boom")
    except ValueError:
        return Failure()


NOW = time.time()

EVENTS = [
    dict(log_format='{client} - {user} "{method} {path}" {status} {bytes_sent} {duration_ms}ms',
         client="127.0.0.1", user="-", method="GET", path="/v2/a/manifests/latest", status=200,
         bytes_sent=528, duration_ms=1.5, log_namespace="ocireg.access",
         log_level=LogLevel.info, log_time=NOW),
    dict(log_format="{n:>5} items, {what!r} and {who!s}", n=3, what="x", who=None,
         log_namespace="ocireg.gc", log_level=LogLevel.warn, log_time=NOW + 0.5),
    dict(log_format="two\nlines {x}", x=1, log_system="worker-1", log_time=NOW + 1.2),
    dict(log_format="{missing} field", log_level=LogLevel.info, log_time=NOW),
    dict(log_format="{obj.attr} and {d[k]} and {call()}", obj=None, d={"k": 1},
         call=lambda: "called", log_time=NOW),
    dict(log_format="{bad:d}", bad="not a number", log_time=NOW),
    dict(log_format="{x!r}", x=_Unprintable(), log_time=NOW),
    dict(log_format="braces {{literal}} {x}", x="ok", log_time=None),
    dict(log_format="failed {what}", what="here", log_failure=_failure(),
         log_level=LogLevel.critical, log_namespace="ocireg", log_time=NOW),
    dict(log_format="", log_time=NOW),
    dict(no_format=True, log_time=NOW),
]


@pytest.mark.parametrize("event", EVENTS, ids=range(len(EVENTS)))
def test_each_line_is_what_twisted_writes(event):
    assert classic_text()(dict(event)) == formatEventAsClassicLogText(dict(event))
    assert event_text(dict(event)) == formatEvent(dict(event))


def test_plain_formats_are_made_without_twisteds_formatter(monkeypatch):
    def refuse(event):
        raise AssertionError("went to twisted's formatter")

    monkeypatch.setattr("ocireg.logformat.formatEvent", refuse)
    monkeypatch.setattr("ocireg.logformat.formatEventAsClassicLogText", refuse)
    for event in EVENTS[:3]:
        assert classic_text()(dict(event)) is not None


def test_time_stamps_follow_the_clock_across_seconds():
    text = classic_text()
    for offset in (0.0, 0.4, 0.99, 1.0, 61.3, 3600.0, 0.2):
        event = dict(log_format="tick", log_time=NOW + offset)
        assert text(dict(event)) == formatEventAsClassicLogText(dict(event))


def test_the_observer_writes_each_line_to_its_stream():
    stream = io.StringIO()
    observer = text_file_observer(stream)
    observer(dict(log_format="hello {who}", who="world", log_namespace="t",
                  log_level=LogLevel.info, log_time=NOW))
    assert stream.getvalue().endswith(" [t#info] hello world\n")
