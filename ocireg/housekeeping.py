"""Housekeeping on a timer: expiry of staging and uploads, then garbage collection.

One process runs it (the parent, with --workers); runs never overlap, and a
run that fails is logged and retried at the next interval.
"""

from __future__ import annotations

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ocireg.domain.expiry import Expiry
from ocireg.domain.gc import GarbageCollector
from ocireg.domain.registry_operations import RegistryOperations
from ocireg.domain.scrub import Scrubber

_log = Logger()


@attrs.define
class Housekeeping:
    """The collector, expiry and scrubber of one registry."""

    collector: GarbageCollector
    expiry: Expiry
    scrubber: Scrubber

    @classmethod
    def of(
        cls,
        registry: RegistryOperations,
        clock: IReactorTime,
        grace_period: float,
        staging_ttl: float,
        upload_ttl: float,
    ) -> Housekeeping:
        return cls(
            GarbageCollector(registry.metadata, registry.blobs, clock, grace_period),
            Expiry(
                registry.metadata, registry.blobs, clock, staging_ttl, upload_ttl,
                registry.is_writing,
            ),
            Scrubber(registry.metadata, registry.blobs),
        )

    async def run(self) -> None:
        try:
            await self.expiry.run()
        finally:
            # Even after a failed expiry: on a full disk, collecting may be what frees room.
            await self.collector.collect()

    def figures(self) -> list[tuple[str, str, float]]:
        """(name, help, value) of what housekeeping did since start, for /metrics."""
        return [
            ("ocireg_gc_runs_total", "Garbage collections run, dry runs too.",
             self.collector.runs),
            ("ocireg_gc_removed_items_total", "Blobs, manifests and stray files collected.",
             self.collector.removed),
            ("ocireg_gc_freed_bytes_total", "Bytes freed by garbage collection.",
             self.collector.freed),
            ("ocireg_staging_promoted_total", "Expired staged manifests promoted.",
             self.expiry.promoted),
            ("ocireg_staging_discarded_total", "Expired staged items discarded.",
             self.expiry.discarded),
            ("ocireg_uploads_purged_total", "Abandoned uploads removed.", self.expiry.purged),
        ]


class HousekeepingService(Service):
    """Runs `housekeeping` every `interval` seconds, the first run one interval after start.

    Not Twisted's TimerService: that one runs at once on start, and an
    interval of 0 would make it run without end rather than never.
    """

    name = "housekeeping"

    def __init__(self, housekeeping: Housekeeping, interval: float, clock: IReactorTime) -> None:
        self._housekeeping = housekeeping
        self._interval = interval
        self._loop = LoopingCall(self._run)
        self._loop.clock = clock
        self._running: Deferred | None = None

    def _run(self) -> Deferred:
        d = Deferred.fromCoroutine(self._housekeeping.run())
        d.addErrback(lambda f: _log.failure("housekeeping failed; retrying next interval", f))
        self._running = d
        return d

    def startService(self) -> None:
        super().startService()
        if self._interval > 0:
            self._loop.start(self._interval, now=False)

    def stopService(self) -> Deferred:
        """Stop the timer; a Deferred that fires when a run in progress is over."""
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        if self._running is None or self._running.called:
            return succeed(None)
        return self._running
