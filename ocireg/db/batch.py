"""Statements over many values: `IN (...)` lists cut to what one statement may bind."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

#: Most parameters one statement binds; SQLite's floor is 999.
BATCH = 500


def chunks(items: Sequence[T], size: int = BATCH) -> Iterable[Sequence[T]]:
    """`items` in consecutive slices of at most `size`."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def marks(n: int) -> str:
    """`n` parameter marks for an `IN (...)` list: `?, ?, ?`."""
    return ", ".join("?" * n)
