"""Free space in the data directory, against the reserve that `min_free_space` keeps.

Uploads stop short of the reserve; everything that frees space or only
writes metadata (deletes, cancels, garbage collection, tag writes) goes on
inside it. The embedded SQLite database lives in the data directory too, and
SQLite needs room to delete rows as much as to add them: without a reserve a
disk filled by uploads could not be emptied by the registry itself.
"""

from __future__ import annotations

import os
import re

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from ocireg.errors import STORAGE_FULL, RegistryError

_log = Logger()

_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_AMOUNT = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]*)$")


@attrs.frozen
class Reserve:
    """Space kept free: a number of bytes, or a fraction of the file system's size."""

    bytes: int = 0
    fraction: float = 0.0

    @classmethod
    def parse(cls, value: object) -> Reserve:
        """A setting such as "256MiB", "1GB", "5%" or a whole number of bytes.

        ValueError says what is wrong with anything else.
        """
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("must be a size such as \"256MiB\" or a percentage such as \"5%\"")
        if isinstance(value, int):
            if value < 0:
                raise ValueError("must not be negative")
            return cls(bytes=value)
        text = value.strip().lower()
        if text.endswith("%"):
            try:
                percent = float(text[:-1])
            except ValueError:
                raise ValueError(f"{value[:40]!r} is not a percentage such as \"5%\"") from None
            if not 0 <= percent < 100:
                raise ValueError(f"{value[:40]!r} must be a percentage from 0 to under 100")
            return cls(fraction=percent / 100)
        match = _AMOUNT.match(text)
        if not match or match.group(2) not in _UNITS:
            raise ValueError(
                f"{value[:40]!r} is not a size such as \"256MiB\" (units B, KB, MB, GB, TB, "
                "KiB, MiB, GiB, TiB) or a percentage such as \"5%\""
            )
        return cls(bytes=int(float(match.group(1)) * _UNITS[match.group(2)]))

    def of(self, total: int) -> int:
        """The bytes kept free on a file system of `total` bytes."""
        return int(total * self.fraction) if self.fraction else self.bytes

    def __str__(self) -> str:
        return f"{self.fraction * 100:g}%" if self.fraction else _size(self.bytes)


@attrs.frozen
class Usage:
    """What the data directory's file system had free when measured, and its reserve."""

    free: int
    total: int
    reserve: int

    @property
    def low(self) -> bool:
        return self.free < self.reserve

    def describe(self) -> str:
        return (
            f"{_size(self.free)} free of {_size(self.total)}, "
            f"below min_free_space ({_size(self.reserve)})"
        )


def measure(path: str, reserve: Reserve) -> Usage:
    """The free space under `path` now (blocking: a statvfs)."""
    stat = os.statvfs(path)
    total = stat.f_blocks * stat.f_frsize
    # f_bavail, not f_bfree: what an unprivileged ocireg may use (ext4 keeps
    # blocks back for root).
    return Usage(stat.f_bavail * stat.f_frsize, total, reserve.of(total))


class BelowReserve(Exception):
    """The free space is below the reserve (what /readyz reports)."""


def refusal(usage: Usage) -> RegistryError:
    return RegistryError(
        STORAGE_FULL,
        f"the registry is out of storage space ({usage.describe()})",
        {"free": usage.free, "min_free_space": usage.reserve},
    )


class FreeSpace:
    """The free space under `path`, measured off the reactor thread at most once per `max_age` s.

    A push opens several uploads a second: each asks, one statvfs serves them.
    """

    def __init__(
        self,
        path: str,
        reserve: Reserve,
        reactor: IReactorThreads,
        clock: IReactorTime,
        pool: ThreadPool,
        max_age: float = 1.0,
    ) -> None:
        self.path = path
        self.reserve = reserve
        self._reactor = reactor
        self._clock = clock
        self._pool = pool
        self._max_age = max_age
        #: The last measurement and when it was made.
        self.last: Usage | None = None
        self._measured = float("-inf")
        self._measuring: list[Deferred] | None = None

    async def usage(self) -> Usage:
        if self.last is not None and self._clock.seconds() - self._measured < self._max_age:
            return self.last
        if self._measuring is not None:
            d: Deferred = Deferred()
            self._measuring.append(d)
            return await d
        self._measuring = waiting = []
        try:
            usage = await deferToThreadPool(
                self._reactor, self._pool, measure, self.path, self.reserve
            )
        except BaseException as e:
            self._measuring = None
            for d in waiting:
                d.errback(e)
            raise
        self._measuring = None
        self._note(usage)
        for d in waiting:
            d.callback(usage)
        return usage

    def _note(self, usage: Usage) -> None:
        if usage.low and (self.last is None or not self.last.low):
            _log.warn(
                "data directory {path}: {state}; new uploads are refused until space is freed",
                path=self.path, state=usage.describe(),
            )
        elif not usage.low and self.last is not None and self.last.low:
            _log.info("data directory {path}: {free} free again; uploads accepted",
                      path=self.path, free=_size(usage.free))
        self.last = usage
        self._measured = self._clock.seconds()

    async def check(self) -> None:
        """Raise STORAGE_FULL when the free space is below the reserve."""
        usage = await self.usage()
        if usage.low:
            raise refusal(usage)

    async def probe(self) -> None:
        """Raise BelowReserve when the free space is below the reserve; for /readyz."""
        usage = await self.usage()
        if usage.low:
            raise BelowReserve(f"{self.path}: {usage.describe()}")

    def figures(self) -> list[tuple[str, str, float]]:
        """(name, help, value) of the last measurement, for /metrics."""
        if self.last is None:
            return []
        return [
            ("ocireg_data_dir_free_bytes",
             "Bytes free for ocireg on the data directory's file system.", self.last.free),
            ("ocireg_data_dir_size_bytes",
             "Size of the data directory's file system in bytes.", self.last.total),
            ("ocireg_data_dir_min_free_bytes",
             "min_free_space in bytes: below it new uploads are refused.", self.last.reserve),
        ]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} TiB"
