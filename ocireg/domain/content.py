"""Content and its membership in versions.

The global content (blob and manifest records, a manifest's references) and
the rows that say which version of a repository holds what. Content is in
version n of a repository when `version_added <= n` and `version_removed` is
null or greater than n; the latest version's content is therefore the rows
whose `version_removed` is null. A new version costs rows for what it
changes, not for everything it holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from ocireg.db.batch import BATCH, chunks, marks
from ocireg.digest import Digest
from ocireg.domain.errors import VersionUnknown
from ocireg.domain.repositories import Repository
from ocireg.interfaces import ITransaction
from ocireg.manifest import Manifest

#: The kinds of content, in the order listings show them.
KINDS = ("tag", "manifest", "blob")

#: What a version holds: kind -> name -> digest (for manifests and blobs name = digest).
Content = dict[str, dict[str, str]]


async def version_exists(txn: ITransaction, repository: Repository, number: int) -> None:
    """Raise VERSION_UNKNOWN unless `repository` has version `number`."""
    rows = await txn.execute(
        "SELECT 1 FROM repository_versions WHERE repository_id = ? AND number = ?",
        (repository.id, number),
    )
    if not rows:
        raise VersionUnknown(repository.name, number)


async def content_at(txn: ITransaction, repository: Repository, number: int) -> Content:
    """What version `number` of `repository` holds."""
    rows = await txn.execute(
        "SELECT kind, name, digest FROM repository_content WHERE repository_id = ? "
        "AND version_added <= ? AND (version_removed IS NULL OR version_removed > ?)",
        (repository.id, number, number),
    )
    content: Content = {kind: {} for kind in KINDS}
    for kind, key, digest in rows:
        content[kind][key] = digest
    return content


async def held_in_latest(
    txn: ITransaction, repository_id: int, kind: str, names: Iterable[str]
) -> set[str]:
    """Which of `names` (of `kind`) the latest version holds."""
    found: set[str] = set()
    for chunk in chunks(sorted(set(names))):
        rows = await txn.execute(
            "SELECT name FROM repository_content WHERE repository_id = ? AND kind = ? "
            f"AND version_removed IS NULL AND name IN ({marks(len(chunk))})",
            (repository_id, kind, *chunk),
        )
        found.update(r[0] for r in rows)
    return found


async def new_version(txn: ITransaction, repository: Repository, reason: str, now: float) -> int:
    """Record the version after `repository`'s latest, made for `reason`; its number."""
    number = repository.latest_version + 1
    await txn.execute(
        "INSERT INTO repository_versions (repository_id, number, base_version, reason, created) "
        "VALUES (?, ?, ?, ?, ?)",
        (repository.id, number, repository.latest_version, reason, now),
    )
    await txn.execute(
        "UPDATE repositories SET latest_version = ? WHERE id = ?", (number, repository.id)
    )
    return number


async def add_content(
    txn: ITransaction, repository_id: int, version: int, rows: list[tuple[str, str, str]]
) -> None:
    """Add content `rows` (kind, name, digest) to `version`: every kind in one statement."""
    for chunk in chunks(rows, BATCH // 5):
        await txn.execute(
            "INSERT INTO repository_content (repository_id, kind, name, digest, version_added) "
            "VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk)),
            tuple(
                v
                for kind, name, digest in chunk
                for v in (repository_id, kind, name, digest, version)
            ),
        )


async def remove_content(
    txn: ITransaction, repository_id: int, version: int, kind: str, names: Iterable[str]
) -> None:
    """Take `names` (of `kind`) out of the latest content: removed by `version`."""
    for chunk in chunks(sorted(set(names))):
        await txn.execute(
            "UPDATE repository_content SET version_removed = ? WHERE repository_id = ? "
            f"AND kind = ? AND version_removed IS NULL AND name IN ({marks(len(chunk))})",
            (version, repository_id, kind, *chunk),
        )


async def references(txn: ITransaction, manifests: set[str]) -> dict[str, list[tuple[str, str]]]:
    """manifest -> its (kind, digest) references, for each of `manifests`."""
    found: dict[str, list[tuple[str, str]]] = {m: [] for m in manifests}
    for chunk in chunks(sorted(manifests)):
        rows = await txn.execute(
            "SELECT manifest, kind, digest FROM manifest_references WHERE manifest IN "
            f"({marks(len(chunk))})",
            tuple(chunk),
        )
        for manifest, kind, digest in rows:
            found[manifest].append((kind, digest))
    return found


async def store_manifest(txn: ITransaction, manifest: Manifest, now: float) -> None:
    """Record `manifest` and its references in the global content, once."""
    rows = await txn.execute(
        "INSERT INTO manifests (digest, media_type, artifact_type, subject, annotations, body, "
        "created) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING RETURNING digest",
        (
            str(manifest.digest),
            manifest.media_type,
            manifest.artifact_type,
            str(manifest.subject) if manifest.subject else None,
            json.dumps(manifest.annotations) if manifest.annotations else None,
            manifest.body,
            now,
        ),
    )
    if not rows:
        return
    referenced = [("blob", str(d)) for d in manifest.blobs] + [
        ("manifest", str(d)) for d in manifest.manifests
    ]
    for chunk in chunks(referenced, BATCH // 3):
        await txn.execute(
            "INSERT INTO manifest_references (manifest, kind, digest) VALUES "
            + ", ".join(["(?, ?, ?)"] * len(chunk)),
            tuple(v for kind, digest in chunk for v in (str(manifest.digest), kind, digest)),
        )


async def forget_blobs(txn: ITransaction, digests: list[Digest]) -> None:
    """Drop the metadata of blobs whose bytes are gone, so HEAD stops claiming them.

    A client that sees 404 uploads the blob again, which heals the store.
    """
    for chunk in chunks(sorted({str(d) for d in digests})):
        await txn.execute(
            f"DELETE FROM blobs WHERE digest IN ({marks(len(chunk))})", tuple(chunk)
        )


