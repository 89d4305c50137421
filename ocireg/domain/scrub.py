"""Scrub: check every blob's bytes against its metadata.

A blob whose bytes are missing, of the wrong size or of the wrong digest is
reported; a corrupt file is moved aside and the blob's metadata dropped, so
it is never served again. The repositories that hold it then answer 404 to
its HEAD and GET, the next tag write that needs it answers
MANIFEST_BLOB_UNKNOWN, and a client's push uploads it again, which heals
the store.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import DeferredLock
from twisted.logger import Logger

from ocireg.digest import Digest
from ocireg.domain.content import forget_blobs
from ocireg.interfaces import IBlobStore, IMetadataStore, ITransaction

_log = Logger()

BATCH = 500


@attrs.frozen
class ScrubReport:
    checked: int
    #: Blobs whose bytes are gone.
    missing: tuple[str, ...]
    #: Blobs whose bytes have the wrong size or digest (moved aside).
    corrupt: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return not (self.missing or self.corrupt)

    def to_json(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "missing": list(self.missing),
            "corrupt": list(self.corrupt),
            "healthy": self.healthy,
        }


async def blob_page(txn: ITransaction, after: str, limit: int) -> list[tuple[str, int]]:
    rows = await txn.execute(
        "SELECT digest, size FROM blobs WHERE digest > ? ORDER BY digest LIMIT ?", (after, limit)
    )
    return [(digest, size) for digest, size in rows]


@attrs.define
class Scrubber:
    metadata: IMetadataStore
    blobs: IBlobStore
    _lock: DeferredLock = attrs.field(factory=DeferredLock)

    async def scrub(self) -> ScrubReport:
        """Verify every blob; one scrub at a time."""
        await self._lock.acquire()
        try:
            return await self._scrub()
        finally:
            self._lock.release()

    async def _scrub(self) -> ScrubReport:
        checked = 0
        missing: list[str] = []
        corrupt: list[str] = []
        after = ""
        while True:
            page = await self.metadata.transact(
                lambda txn, after=after: blob_page(txn, after, BATCH)
            )
            if not page:
                break
            after = page[-1][0]
            for text, size in page:
                digest = Digest.parse(text)
                problem = await self.blobs.verify_blob(digest, size)
                checked += 1
                if problem == "missing":
                    missing.append(text)
                    _log.error("scrub: the bytes of blob {digest} are missing", digest=text)
                elif problem is not None:
                    corrupt.append(text)
                    await self.blobs.quarantine_blob(digest)
                    _log.error(
                        "scrub: blob {digest} has the wrong {problem}; moved aside",
                        digest=text,
                        problem=problem,
                    )
        gone = [Digest.parse(d) for d in missing + corrupt]
        if gone:
            await self.metadata.transact(lambda txn: forget_blobs(txn, gone))
        report = ScrubReport(checked, tuple(missing), tuple(corrupt))
        _log.info(
            "scrub: {checked} blobs checked, {missing} missing, {corrupt} corrupt",
            checked=checked,
            missing=len(missing),
            corrupt=len(corrupt),
        )
        return report
