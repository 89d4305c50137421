"""Where the `ocireg` command writes, and how it shows values in its tables."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import attrs


@attrs.frozen
class Output:
    """Where the command writes: its results to `out`, its one-line errors to `err`."""

    out: Callable[[str], object] = sys.stdout.write
    err: Callable[[str], object] = sys.stderr.write

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


def when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


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
