"""Expiry of what pushes leave behind: staging no tag reached, and abandoned uploads.

Staged content older than the staging time-to-live is settled: a complete
manifest (its whole closure present) is promoted into a version of its own,
never silently dropped; what is left is taken out of staging, and garbage
collection judges it later. Upload sessions with no write for longer than
the upload time-to-live are cancelled and their bytes removed.

Uploads go first, and their bytes before their rows: on a full disk that is
what makes room for every later metadata write, this run's included.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocireg.db.batch import marks
from ocireg.digest import Digest
from ocireg.domain.folding import prune_by_name
from ocireg.domain.promotion import promote
from ocireg.domain.repositories import Repository
from ocireg.errors import RegistryError
from ocireg.interfaces import IBlobStore, IMetadataStore, ITransaction
from ocireg.manifest import parse_manifest

_log = Logger()

EXPIRED_STAGING_REASON = "promote expired staging"


@attrs.frozen
class ExpiryReport:
    promoted: int
    discarded: int
    uploads: int


async def repositories_with_expired_staging(txn: ITransaction, before: float) -> list[int]:
    rows = await txn.execute(
        "SELECT DISTINCT repository_id FROM staged_content WHERE created < ? "
        "ORDER BY repository_id",
        (before,),
    )
    return [r[0] for r in rows]


async def settle_staging(
    txn: ITransaction, blob_store: IBlobStore, repository_id: int, before: float, now: float
) -> tuple[int, int]:
    """Promote the complete expired manifests of one repository, discard the rest.

    Manifests that another expired manifest references (the children of an
    index) go last, so an index and its children land in one version.
    Returns how many manifests were promoted and how many items discarded.
    """
    rows = await txn.execute(
        "SELECT id, name, latest_version FROM repositories WHERE id = ?" + txn.for_update,
        (repository_id,),
    )
    if not rows:
        return 0, 0
    repository = Repository(*rows[0])
    staged = [
        r[0]
        for r in await txn.execute(
            "SELECT digest FROM staged_content WHERE repository_id = ? AND kind = 'manifest' "
            "AND created < ? ORDER BY digest",
            (repository_id, before),
        )
    ]
    children: set[str] = set()
    if staged:
        children = {
            r[0]
            for r in await txn.execute(
                "SELECT digest FROM manifest_references WHERE kind = 'manifest' "
                f"AND manifest IN ({marks(len(staged))})",
                tuple(staged),
            )
        }
    promoted = 0
    for digest in sorted(staged, key=lambda d: (d in children, d)):
        still_staged = await txn.execute(
            "SELECT 1 FROM staged_content WHERE repository_id = ? AND kind = 'manifest' "
            "AND digest = ?",
            (repository_id, digest),
        )
        if not still_staged:
            continue  # promoted with an index that holds it
        media_type, body = (
            await txn.execute("SELECT media_type, body FROM manifests WHERE digest = ?", (digest,))
        )[0]
        manifest = parse_manifest(bytes(body), media_type)
        manifest = attrs.evolve(manifest, digest=Digest.parse(digest))
        try:
            result = await promote(
                txn, blob_store, repository, manifest, None, now, EXPIRED_STAGING_REASON
            )
        except RegistryError:
            continue  # incomplete: discarded below
        if result.created:
            promoted += 1
            repository = attrs.evolve(repository, latest_version=result.version)
    discarded = await txn.execute(
        "DELETE FROM staged_content WHERE repository_id = ? AND created < ? RETURNING digest",
        (repository_id, before),
    )
    if promoted:
        await prune_by_name(txn, repository.name)
    return promoted, len(discarded)


async def stale_uploads(txn: ITransaction, before: float) -> list[str]:
    rows = await txn.execute("SELECT uuid FROM uploads WHERE updated < ?", (before,))
    return [r[0] for r in rows]


async def known_uploads(txn: ITransaction, uuids: list[str]) -> set[str]:
    rows = await txn.execute(
        f"SELECT uuid FROM uploads WHERE uuid IN ({marks(len(uuids))})", tuple(uuids)
    )
    return {r[0] for r in rows}


async def forget_upload(txn: ITransaction, uuid: str, before: float) -> bool:
    """Delete upload `uuid`'s row if it is still stale; whether it did."""
    rows = await txn.execute(
        "DELETE FROM uploads WHERE uuid = ? AND updated < ? RETURNING uuid", (uuid, before)
    )
    return bool(rows)


@attrs.define
class Expiry:
    """Settles expired staging and purges abandoned uploads."""

    metadata: IMetadataStore
    blobs: IBlobStore
    clock: IReactorTime
    staging_ttl: float
    upload_ttl: float
    #: Is an upload being written to by this process right now?
    writing: Callable[[str], bool]
    #: Since start: staged manifests promoted, staged items discarded, uploads purged.
    promoted: int = 0
    discarded: int = 0
    purged: int = 0

    async def run(self) -> ExpiryReport:
        now = self.clock.seconds()
        uploads = await self._purge_uploads(now)
        promoted, discarded = await self._settle_staging(now)
        self.promoted += promoted
        self.discarded += discarded
        self.purged += uploads
        if promoted or discarded or uploads:
            _log.info(
                "expiry: {promoted} staged manifests promoted, {discarded} staged items "
                "discarded, {uploads} abandoned uploads removed",
                promoted=promoted,
                discarded=discarded,
                uploads=uploads,
            )
        return ExpiryReport(promoted, discarded, uploads)

    async def _settle_staging(self, now: float) -> tuple[int, int]:
        before = now - self.staging_ttl
        promoted = discarded = 0
        repositories = await self.metadata.transact(
            lambda txn: repositories_with_expired_staging(txn, before)
        )
        for repository_id in repositories:
            p, d = await self.metadata.transact(
                lambda txn, r=repository_id: settle_staging(txn, self.blobs, r, before, now)
            )
            promoted += p
            discarded += d
        return promoted, discarded

    async def _purge_uploads(self, now: float) -> int:
        before = now - self.upload_ttl
        purged = 0
        for uuid in await self.metadata.transact(lambda txn: stale_uploads(txn, before)):
            # Bytes written since (by another process, whose row update may
            # not be in yet) or a writer holding them keep the upload.
            if self.writing(uuid) or not await self.blobs.delete_upload_older_than(uuid, before):
                continue
            if await self.metadata.transact(lambda txn, u=uuid: forget_upload(txn, u, before)):
                purged += 1
        # Bytes whose session row never committed (a crash at its creation).
        stray = [uuid for uuid, _, written in await self.blobs.stored_uploads() if written < before]
        if stray:
            known = await self.metadata.transact(lambda txn: known_uploads(txn, stray))
            for uuid in stray:
                if uuid not in known and not self.writing(uuid):
                    await self.blobs.delete_upload(uuid)
                    purged += 1
        return purged
