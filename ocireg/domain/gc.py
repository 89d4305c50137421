"""Online garbage collection of blobs and manifests no repository holds.

Content is collectable when no repository version (any version, not just the
latest), no staging version references it, and it is older than the grace
period. Collection runs while the registry serves; what keeps it safe:

- The metadata rows go first, each deleted only if it is still unreferenced
  and still old in the same statement; the bytes go after, and only those
  stored before the grace period began. A blob uploaded again meanwhile has
  a new row and a fresh file, and both are kept.
- A push that relied on something collected (it saw a blob with HEAD, the
  blob then left the repository and was collected) finds it missing at its
  tag write, answers 400 MANIFEST_BLOB_UNKNOWN, and the client's retry
  uploads it again. A tag never points at a manifest whose blobs are gone.
- Bytes whose rows a crash already removed (a collection killed between its
  row and file deletions) are found by a sweep of the blob store and removed
  too, by the same grace period: the next run cleans up after a killed one.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocireg.db.batch import marks
from ocireg.digest import Digest
from ocireg.interfaces import IBlobStore, IMetadataStore, ITransaction

_log = Logger()

#: Rows looked at and deleted per transaction, so no transaction runs long.
BATCH = 500

#: Blob files without metadata are this old at least before they go, even with
#: a shorter grace period: a blob being committed has its file before its row,
#: for as long as its metadata transaction takes, and a transaction is cut off
#: well before this (PostgreSQL's after 30 s).
STRAY_MIN_AGE = 60.0

_UNREFERENCED = (
    "created < ? "
    "AND NOT EXISTS (SELECT 1 FROM repository_content c WHERE c.digest = {table}.digest) "
    "AND NOT EXISTS (SELECT 1 FROM staged_content s WHERE s.digest = {table}.digest)"
)


@attrs.frozen
class CollectionReport:
    """What one collection removed (or, in a dry run, would remove)."""

    started: float
    duration: float
    dry_run: bool
    manifests: int
    blobs: int
    #: Bytes of the blobs and manifest bodies removed.
    bytes: int
    #: Blob files removed that had no metadata left (a crash between the two).
    stray_files: int

    def to_json(self) -> dict[str, object]:
        return attrs.asdict(self)


async def unreferenced(
    txn: ITransaction, table: str, before: float, after: str, limit: int
) -> list[tuple[str, int]]:
    """Digests and sizes of `table` ('blobs' or 'manifests') rows no one references."""
    size = "size" if table == "blobs" else "length(body)"
    return [
        (digest, size_)
        for digest, size_ in await txn.execute(
            f"SELECT digest, {size} FROM {table} WHERE digest > ? AND "
            + _UNREFERENCED.format(table=table)
            + " ORDER BY digest LIMIT ?",
            (after, before, limit),
        )
    ]


async def delete_unreferenced(
    txn: ITransaction, table: str, before: float, digests: list[str]
) -> list[str]:
    """Delete those of `digests` that are still unreferenced and old; the ones deleted."""
    if not digests:
        return []
    rows = await txn.execute(
        f"DELETE FROM {table} WHERE digest IN ({marks(len(digests))}) AND "
        + _UNREFERENCED.format(table=table)
        + " RETURNING digest",
        (*digests, before),
    )
    return [r[0] for r in rows]


async def known_blobs(txn: ITransaction, digests: list[str]) -> set[str]:
    rows = await txn.execute(
        f"SELECT digest FROM blobs WHERE digest IN ({marks(len(digests))})", tuple(digests)
    )
    return {r[0] for r in rows}


@attrs.define
class GarbageCollector:
    """Collects unreferenced content older than `grace` seconds; one run at a time."""

    metadata: IMetadataStore
    blobs: IBlobStore
    clock: IReactorTime
    grace: float
    #: How many recent reports to keep for the management API.
    keep_reports: int = 20
    reports: list[CollectionReport] = attrs.field(factory=list)
    #: Since start: collections run (dry runs too), items removed, bytes freed.
    runs: int = 0
    removed: int = 0
    freed: int = 0
    _lock: DeferredLock = attrs.field(factory=DeferredLock)

    async def collect(self, dry_run: bool = False) -> CollectionReport:
        await self._lock.acquire()
        try:
            report = await self._collect(dry_run)
        finally:
            self._lock.release()
        self.reports.append(report)
        del self.reports[: -self.keep_reports]
        self.runs += 1
        if not dry_run:
            self.removed += report.manifests + report.blobs + report.stray_files
            self.freed += report.bytes
        _log.info(
            "garbage collection{dry}: {manifests} manifests, {blobs} blobs, {bytes} bytes"
            "{would}removed, {stray} stray files, in {duration:.2f} s",
            dry=" (dry run)" if dry_run else "",
            would=" would be " if dry_run else " ",
            manifests=report.manifests,
            blobs=report.blobs,
            bytes=report.bytes,
            stray=report.stray_files,
            duration=report.duration,
        )
        return report

    async def _collect(self, dry_run: bool) -> CollectionReport:
        started = self.clock.seconds()
        before = started - self.grace
        manifests, manifest_bytes = await self._collect_table("manifests", before, dry_run)
        blobs, blob_bytes = await self._collect_table("blobs", before, dry_run)
        stray = await self._sweep_stray_files(
            started - max(self.grace, STRAY_MIN_AGE), dry_run
        )
        return CollectionReport(
            started=started,
            duration=self.clock.seconds() - started,
            dry_run=dry_run,
            manifests=manifests,
            blobs=blobs,
            bytes=manifest_bytes + blob_bytes,
            stray_files=stray,
        )

    async def _collect_table(self, table: str, before: float, dry_run: bool) -> tuple[int, int]:
        count = total = 0
        after = ""
        while True:
            found = await self.metadata.transact(
                lambda txn, after=after: unreferenced(txn, table, before, after, BATCH)
            )
            if not found:
                return count, total
            after = found[-1][0]
            sizes = dict(found)
            if dry_run:
                gone = list(sizes)
            else:
                gone = await self.metadata.transact(
                    lambda txn, digests=list(sizes): delete_unreferenced(
                        txn, table, before, digests
                    )
                )
                if table == "blobs":
                    for digest in gone:
                        await self.blobs.delete_blob_older_than(Digest.parse(digest), before)
            count += len(gone)
            total += sum(sizes[d] for d in gone)

    async def _sweep_stray_files(self, before: float, dry_run: bool) -> int:
        removed = 0
        for group in await self.blobs.blob_groups():
            stored = await self.blobs.stored_blobs(group)
            old = [str(digest) for digest, _, at in stored if at < before]
            for i in range(0, len(old), BATCH):
                chunk = old[i : i + BATCH]
                known = await self.metadata.transact(lambda txn, c=chunk: known_blobs(txn, c))
                for digest in chunk:
                    if digest in known:
                        continue
                    if dry_run:
                        removed += 1
                    elif await self.blobs.delete_blob_older_than(Digest.parse(digest), before):
                        removed += 1
        return removed
