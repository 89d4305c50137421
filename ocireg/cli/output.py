"""Where the `ocireg` command writes, and how it shows values in its tables."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import attrs


@attrs.frozen
class Output:
    """Where the command writes: its results to `out`, its one-line errors to `err`;
    and where a question's answer comes from (`answer`, a line of standard input)."""

    out: Callable[[str], object] = sys.stdout.write
    err: Callable[[str], object] = sys.stderr.write
    answer: Callable[[], str] = sys.stdin.readline

    def confirm(self, question: str) -> bool:
        """Whether the answer to `question` (asked on `err`) is yes; no answer is no."""
        self.err(question)
        reply = self.answer()
        if not reply.endswith("\n"):
            # No line at all (standard input at its end): the next output starts a line.
            self.err("\n")
        return reply.strip().lower() in ("y", "yes")

    def line(self, text: str = "") -> None:
        self.out(text + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        cells = [[cell(c) for c in row] for row in rows]
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        for row in [list(headers), *cells]:
            self.line("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def cell(value: object) -> str:
    if value is None:
        return "-"
    return str(value)


#: Keys of the API's documents whose numbers are times (seconds since the epoch).
_TIME_KEYS = frozenset({"created", "updated", "started"})


def when(seconds: float) -> str:
    """A time for a table: local, to the second, with its zone (`2026-12-07 23:42:03 CET`)."""
    return datetime.fromtimestamp(seconds).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def rfc3339(seconds: float) -> str:
    """A time for JSON: RFC 3339 in UTC, to the millisecond (`2026-12-07T22:42:03.120Z`)."""
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def with_rfc3339_times(document: object) -> object:
    """`document` (the API's JSON) with the times it holds as RFC 3339 strings."""
    if isinstance(document, dict):
        return {
            key: rfc3339(value)
            if key in _TIME_KEYS and isinstance(value, int | float) and not isinstance(value, bool)
            else with_rfc3339_times(value)
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [with_rfc3339_times(item) for item in document]
    return document


def size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def short_digest(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:12]}"


def counts(c: dict) -> str:
    return f"{c['tags']}t {c['manifests']}m {c['blobs']}b"
