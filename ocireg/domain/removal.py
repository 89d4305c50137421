"""Removal: deleting a blob, a tag or a manifest from a repository, as the registry API does.

Each makes a new version without what it removes (or takes it out of
staging only, when only staging held it). What removing would leave broken
is refused: a blob a manifest of the latest version needs, a manifest an
index still holds.
"""

from __future__ import annotations

from ocireg.digest import Digest
from ocireg.domain.content import held_in_latest, new_version, remove_content
from ocireg.domain.errors import BlobUnknown, DeleteRefused, NotInRepository
from ocireg.domain.repositories import delete_target
from ocireg.domain.staging import staged, unstage
from ocireg.interfaces import ITransaction


async def delete_blob(txn: ITransaction, name: str, digest: Digest, now: float) -> None:
    """Take blob `digest` out of repository `name`: a new version without it, or out of staging.

    A blob that a manifest of the latest version needs is refused with a
    conflict: removing it would leave that manifest broken.
    """
    repository = await delete_target(txn, name)
    text = str(digest)
    in_staging = await staged(txn, repository.id, "blob", [text])
    in_current = await held_in_latest(txn, repository.id, "blob", [text])
    if not in_staging and not in_current:
        raise BlobUnknown(text, name)
    if in_current:
        users = await _manifests_needing(txn, repository.id, "blob", text)
        if users:
            raise DeleteRefused("blob", text, name, tuple(users))
        version = await new_version(txn, repository, f"delete blob {digest}", now)
        await remove_content(txn, repository.id, version, "blob", [text])
    await unstage(txn, repository.id, "blob", [text])


async def _manifests_needing(
    txn: ITransaction, repository_id: int, kind: str, digest: str, with_staging: bool = False
) -> list[str]:
    """Manifests of the latest version (with `with_staging`, of staging too) using `digest`."""
    if not with_staging:
        rows = await txn.execute(
            "SELECT r.manifest FROM manifest_references r JOIN repository_content c "
            "ON c.repository_id = ? AND c.kind = 'manifest' AND c.name = r.manifest "
            "AND c.version_removed IS NULL WHERE r.kind = ? AND r.digest = ? ORDER BY r.manifest",
            (repository_id, kind, digest),
        )
    else:
        rows = await txn.execute(
            "SELECT r.manifest FROM manifest_references r WHERE r.kind = ? AND r.digest = ? "
            "AND (EXISTS (SELECT 1 FROM repository_content c WHERE c.repository_id = ? "
            "AND c.kind = 'manifest' AND c.name = r.manifest AND c.version_removed IS NULL) "
            "OR EXISTS (SELECT 1 FROM staged_content s WHERE s.repository_id = ? "
            "AND s.kind = 'manifest' AND s.digest = r.manifest)) ORDER BY r.manifest",
            (kind, digest, repository_id, repository_id),
        )
    return [r[0] for r in rows]


async def delete_tag(txn: ITransaction, name: str, tag: str, now: float) -> int:
    """A new version of `name` without `tag`; its number."""
    repository = await delete_target(txn, name)
    if not await held_in_latest(txn, repository.id, "tag", [tag]):
        raise NotInRepository("tag", tag, name)
    version = await new_version(txn, repository, f"delete tag {tag}", now)
    await remove_content(txn, repository.id, version, "tag", [tag])
    return version


async def delete_manifest(txn: ITransaction, name: str, digest: str, now: float) -> int | None:
    """Take manifest `digest` out of `name`, with the tags that point at it.

    The blobs it needed that no other manifest of the version needs go with
    it; child manifests stay, as manifests of their own. Returns the new
    version, or None when the manifest was only staged.
    """
    repository = await delete_target(txn, name)
    in_staging = await staged(txn, repository.id, "manifest", [digest])
    in_current = await held_in_latest(txn, repository.id, "manifest", [digest])
    if not in_staging and not in_current:
        raise NotInRepository("manifest", digest, name)
    # A child that an index still needs stays: the index would point at nothing,
    # in a version (unpullable) or in staging (dropped instead of promoted).
    parents = await _manifests_needing(txn, repository.id, "manifest", digest, with_staging=True)
    if parents:
        raise DeleteRefused("manifest", digest, name, tuple(parents))
    await unstage(txn, repository.id, "manifest", [digest])
    if not in_current:
        return None
    tags = await txn.execute(
        "SELECT name FROM repository_content WHERE repository_id = ? AND kind = 'tag' "
        "AND digest = ? AND version_removed IS NULL",
        (repository.id, digest),
    )
    version = await new_version(txn, repository, f"delete manifest {digest}", now)
    await remove_content(txn, repository.id, version, "manifest", [digest])
    await remove_content(txn, repository.id, version, "tag", [t[0] for t in tags])
    needed = await txn.execute(
        "SELECT digest FROM manifest_references WHERE manifest = ? AND kind = 'blob'", (digest,)
    )
    orphans = [
        d for (d,) in needed if not await _manifests_needing(txn, repository.id, "blob", d)
    ]
    await remove_content(txn, repository.id, version, "blob", orphans)
    return version


