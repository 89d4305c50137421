"""A repository's staging version: what a push has uploaded that no tag reaches yet.

Blobs and manifests pushed by digest are staged; a tag write promotes its
manifest's closure out of staging (`ocireg.domain.promotion`). A user sees
staging and can discard it: discarding takes content out of staging only;
the blobs and manifests stay in the global content for garbage collection to
judge, and uploads still in progress are left to finish or expire.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ocireg.db.batch import BATCH, chunks, marks
from ocireg.digest import Digest
from ocireg.domain.content import store_manifest
from ocireg.domain.lookups import blob_size
from ocireg.domain.repositories import Repository, existing_repository, push_target
from ocireg.interfaces import ITransaction
from ocireg.manifest import Manifest


@attrs.frozen
class StagedItem:
    kind: str
    digest: str
    created: float


@attrs.frozen
class UploadInProgress:
    """An upload session through a base path serving the repository, as staging lists it."""

    uuid: str
    base_path: str
    created: float
    updated: float


@attrs.frozen
class Staging:
    repository: str
    items: tuple[StagedItem, ...]
    #: Upload sessions in progress through a base path serving the repository.
    uploads: tuple[UploadInProgress, ...]
    #: When the oldest staged item was staged, or None when staging is empty.
    oldest: float | None


async def stage(
    txn: ITransaction, repository: Repository, kind: str, digest: str, now: float
) -> None:
    """Add `digest` (of `kind`) to the staging version, unless the latest version holds it."""
    await txn.execute(
        "INSERT INTO staged_content (repository_id, kind, digest, created) SELECT ?, ?, ?, ? "
        "WHERE NOT EXISTS (SELECT 1 FROM repository_content WHERE repository_id = ? "
        "AND kind = ? AND name = ? AND version_removed IS NULL) "
        "ON CONFLICT (repository_id, kind, digest) DO NOTHING",
        (repository.id, kind, digest, now, repository.id, kind, digest),
    )


async def staged(
    txn: ITransaction, repository_id: int, kind: str, digests: Iterable[str]
) -> set[str]:
    """Which of `digests` (of `kind`) the repository's staging version holds."""
    found: set[str] = set()
    for chunk in chunks(sorted(set(digests))):
        rows = await txn.execute(
            "SELECT digest FROM staged_content WHERE repository_id = ? AND kind = ? "
            f"AND digest IN ({marks(len(chunk))})",
            (repository_id, kind, *chunk),
        )
        found.update(r[0] for r in rows)
    return found


async def unstage(
    txn: ITransaction, repository_id: int, kind: str, digests: Iterable[str]
) -> None:
    """Take `digests` (of `kind`) out of the staging version."""
    for chunk in chunks(sorted(set(digests))):
        await txn.execute(
            "DELETE FROM staged_content WHERE repository_id = ? AND kind = ? "
            f"AND digest IN ({marks(len(chunk))})",
            (repository_id, kind, *chunk),
        )


async def unstage_held(
    txn: ITransaction, repository_id: int, held: frozenset[tuple[str, str]]
) -> None:
    """Take `held` ((kind, digest) pairs) out of the staging version; one statement if they fit."""
    parts = [
        (kind, chunk)
        for kind in ("manifest", "blob")
        for chunk in chunks(sorted(d for k, d in held if k == kind))
    ]
    while parts:
        batch = [parts.pop(0)]
        while parts and sum(len(c) for _, c in batch) + len(parts[0][1]) <= BATCH:
            batch.append(parts.pop(0))
        await txn.execute(
            "DELETE FROM staged_content WHERE "
            + " OR ".join(
                f"(repository_id = ? AND kind = ? AND digest IN ({marks(len(chunk))}))"
                for _, chunk in batch
            ),
            tuple(v for kind, chunk in batch for v in (repository_id, kind, *chunk)),
        )


async def stage_blob(
    txn: ITransaction, name: str, digest: Digest, size: int, now: float
) -> None:
    """Record blob `digest` and add it to the staging version of repository `name`."""
    await txn.execute(
        "INSERT INTO blobs (digest, size, created) VALUES (?, ?, ?) "
        "ON CONFLICT (digest) DO NOTHING",
        (str(digest), size, now),
    )
    repository, _ = await push_target(txn, name, now)
    await stage(txn, repository, "blob", str(digest), now)


async def mount_blob(
    txn: ITransaction, name: str, source: str, digest: Digest, now: float
) -> int | None:
    """Stage into `name` a blob that repository `source` holds; its size, or None if it cannot."""
    size = await blob_size(txn, source, digest)
    if size is None:
        return None
    repository, _ = await push_target(txn, name, now)
    await stage(txn, repository, "blob", str(digest), now)
    return size


async def stage_manifest(txn: ITransaction, name: str, manifest: Manifest, now: float) -> None:
    """Record `manifest` and add it to the staging version of repository `name`."""
    repository, _ = await push_target(txn, name, now)
    await store_manifest(txn, manifest, now)
    await stage(txn, repository, "manifest", str(manifest.digest), now)


async def show(txn: ITransaction, name: str) -> Staging:
    """What the staging version of `name` holds, and the uploads in progress to it."""
    repository = await existing_repository(txn, name)
    rows = await txn.execute(
        "SELECT kind, digest, created FROM staged_content WHERE repository_id = ? "
        "ORDER BY created, kind, digest",
        (repository.id,),
    )
    items = tuple(StagedItem(*row) for row in rows)
    # Uploads are recorded under the name the client pushed to: the
    # repository's own name or the base path of one of its distributions.
    uploads = await txn.execute(
        "SELECT uuid, repository, created, updated FROM uploads WHERE repository = ? "
        "OR repository IN (SELECT base_path FROM distributions WHERE repository_id = ?) "
        "ORDER BY created, uuid",
        (repository.name, repository.id),
    )
    return Staging(
        repository.name,
        items,
        tuple(UploadInProgress(*row) for row in uploads),
        min((i.created for i in items), default=None),
    )


async def discard(txn: ITransaction, name: str) -> int:
    """Empty the staging version of `name`; how many items it held."""
    repository = await existing_repository(txn, name, lock=True)
    rows = await txn.execute(
        "DELETE FROM staged_content WHERE repository_id = ? RETURNING digest", (repository.id,)
    )
    return len(rows)


