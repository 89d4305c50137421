"""Repositories as a whole: listing, creating, describing and deleting them.

Functions of one transaction (`txn`, an `ITransaction`), like `versions`.
Deleting a repository deletes its versions, staging and distributions; the
blobs and manifests it held stay in the global content, orphaned, for
garbage collection to judge. Uploads in progress to it are left to expire:
one that completes creates the repository anew, as any push would.
"""

from __future__ import annotations

import attrs

from ocireg.errors import STATE_CONFLICT, RegistryError
from ocireg.interfaces import ITransaction
from ocireg.versions import _existing_repository, ensure_repository, find_repository


@attrs.frozen
class RepositoryInfo:
    name: str
    latest_version: int
    created: float
    retain_versions: int | None
    tags: int
    manifests: int
    #: Bytes of the blobs the latest version holds.
    size: int
    #: Bytes of those blobs that no other repository holds, in any version or staging.
    unique_size: int
    distributions: tuple[str, ...]


async def names(
    txn: ITransaction, prefix: str | None, limit: int, after: str | None
) -> list[str]:
    """Repository names in lexical order, starting with `prefix`, after `after`."""
    sql = "SELECT name FROM repositories WHERE 1 = 1"
    params: tuple = ()
    if prefix:
        # substr, not LIKE: a prefix's '_' and '%' are plain characters here.
        sql += " AND substr(name, 1, ?) = ?"
        params += (len(prefix), prefix)
    if after is not None:
        sql += " AND name > ?"
        params += (after,)
    rows = await txn.execute(sql + " ORDER BY name LIMIT ?", (*params, limit))
    return [r[0] for r in rows]


async def create(txn: ITransaction, name: str, retain_versions: int | None, now: float,
                 distribute: bool = True) -> None:
    """Create repository `name` with its empty version 0; a conflict if it exists.

    With `distribute`, a distribution of the same base path serves it (unless
    that base path is taken).
    """
    if await find_repository(txn, name) is not None:
        raise RegistryError(STATE_CONFLICT, f"repository {name!r} already exists",
                            {"field": "name", "name": name})
    repository = await ensure_repository(txn, name, now)
    if retain_versions is not None:
        await txn.execute(
            "UPDATE repositories SET retain_versions = ? WHERE id = ?",
            (retain_versions, repository.id),
        )
    if distribute:
        await txn.execute(
            "INSERT INTO distributions (base_path, repository_id, version, created) "
            "VALUES (?, ?, NULL, ?) ON CONFLICT (base_path) DO NOTHING",
            (name, repository.id, now),
        )


async def describe(txn: ITransaction, name: str) -> RepositoryInfo:
    repository = await _existing_repository(txn, name)
    rows = await txn.execute(
        "SELECT created, retain_versions FROM repositories WHERE id = ?", (repository.id,)
    )
    created, retain_versions = rows[0]
    counts = dict(
        await txn.execute(
            "SELECT kind, count(*) FROM repository_content WHERE repository_id = ? "
            "AND version_removed IS NULL GROUP BY kind",
            (repository.id,),
        )
    )
    size = await txn.execute(
        "SELECT coalesce(sum(b.size), 0) FROM repository_content c "
        "JOIN blobs b ON b.digest = c.name WHERE c.repository_id = ? AND c.kind = 'blob' "
        "AND c.version_removed IS NULL",
        (repository.id,),
    )
    unique = await txn.execute(
        "SELECT coalesce(sum(b.size), 0) FROM repository_content c "
        "JOIN blobs b ON b.digest = c.name WHERE c.repository_id = ? AND c.kind = 'blob' "
        "AND c.version_removed IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM repository_content o WHERE o.digest = c.name "
        "AND o.kind = 'blob' AND o.repository_id <> c.repository_id) "
        "AND NOT EXISTS (SELECT 1 FROM staged_content s WHERE s.digest = c.name "
        "AND s.kind = 'blob' AND s.repository_id <> c.repository_id)",
        (repository.id,),
    )
    distributions = await txn.execute(
        "SELECT base_path FROM distributions WHERE repository_id = ? ORDER BY base_path",
        (repository.id,),
    )
    return RepositoryInfo(
        repository.name,
        repository.latest_version,
        created,
        retain_versions,
        counts.get("tag", 0),
        counts.get("manifest", 0),
        int(size[0][0]),
        int(unique[0][0]),
        tuple(r[0] for r in distributions),
    )


async def delete(txn: ITransaction, name: str) -> None:
    """Delete repository `name`, its versions, staging and distributions; not its content."""
    repository = await _existing_repository(txn, name, lock=True)
    # Explicit rather than trusting ON DELETE CASCADE: SQLite enforces it
    # only with its foreign_keys pragma on.
    for table in ("distributions", "staged_content", "repository_content",
                  "repository_versions"):
        await txn.execute(f"DELETE FROM {table} WHERE repository_id = ?", (repository.id,))
    await txn.execute("DELETE FROM repositories WHERE id = ?", (repository.id,))
