"""Housekeeping runs on its interval, and not at all when the interval is 0."""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock

from ocireg.housekeeping import HousekeepingService


@attrs.define
class CountingHousekeeping:
    runs: int = 0

    async def run(self) -> None:
        self.runs += 1


def test_runs_once_per_interval_after_start():
    clock = Clock()
    housekeeping = CountingHousekeeping()
    service = HousekeepingService(housekeeping, 60, clock)
    service.startService()

    clock.advance(59)
    assert housekeeping.runs == 0
    clock.advance(1)
    assert housekeeping.runs == 1
    clock.advance(60)
    clock.advance(60)
    assert housekeeping.runs == 3

    service.stopService()
    clock.advance(600)
    assert housekeeping.runs == 3


def test_interval_zero_never_runs():
    clock = Clock()
    housekeeping = CountingHousekeeping()
    service = HousekeepingService(housekeeping, 0, clock)
    service.startService()
    clock.advance(10 * 86400)
    assert housekeeping.runs == 0
    service.stopService()


def test_a_failing_run_does_not_stop_the_timer():
    clock = Clock()

    @attrs.define
    class Failing:
        runs: int = 0

        async def run(self) -> None:
            self.runs += 1
            raise OSError("disk on fire")

    housekeeping = Failing()
    service = HousekeepingService(housekeeping, 60, clock)
    service.startService()
    clock.advance(60)
    clock.advance(60)
    assert housekeeping.runs == 2
    service.stopService()
