"""Repositories: finding, creating and deleting them, and which one a push or delete changes.

Functions of one transaction (`txn`, an `ITransaction`), as every module of
`ocireg.domain` but the `*_operations` ones. Deleting a repository deletes
its versions, staging and distributions; the blobs and manifests it held
stay in the global content, orphaned, for garbage collection to judge.
Uploads in progress to it are left to expire: one that completes creates the
repository anew, as any push would.
"""

from __future__ import annotations

import attrs

from ocireg.domain.errors import DistributionPinned, NameUnknown, RepositoryExists
from ocireg.interfaces import ITransaction


@attrs.frozen
class Repository:
    id: int
    name: str
    latest_version: int


@attrs.frozen
class View:
    """What a registry API name (a distribution's base path) shows.

    The repository's latest version and its staging when `pinned` is None,
    else version `pinned` alone.
    """

    repository: Repository
    pinned: int | None = None


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


async def find_repository(txn: ITransaction, name: str, lock: bool = False) -> Repository | None:
    """The repository called `name`; with `lock`, its row is locked until commit."""
    rows = await txn.execute(
        "SELECT id, name, latest_version FROM repositories WHERE name = ?"
        + (txn.for_update if lock else ""),
        (name,),
    )
    return Repository(*rows[0]) if rows else None


async def existing_repository(txn: ITransaction, name: str, lock: bool = False) -> Repository:
    """`find_repository`, or NAME_UNKNOWN when there is none."""
    repository = await find_repository(txn, name, lock)
    if repository is None:
        raise NameUnknown(name)
    return repository


async def ensure_repository(txn: ITransaction, name: str, now: float) -> Repository:
    """The repository `name`, created with its empty version 0 if new; its row locked."""
    repository = await find_repository(txn, name, lock=True)
    if repository is not None:
        return repository
    rows = await txn.execute(
        "INSERT INTO repositories (name, latest_version, created) VALUES (?, 0, ?) "
        "ON CONFLICT (name) DO NOTHING RETURNING id",
        (name, now),
    )
    if not rows:
        # Another transaction created it since we looked.
        return await existing_repository(txn, name, lock=True)
    await txn.execute(
        "INSERT INTO repository_versions (repository_id, number, base_version, reason, created) "
        "VALUES (?, 0, NULL, 'created', ?)",
        (rows[0][0], now),
    )
    return Repository(rows[0][0], name, 0)


async def find_view(txn: ITransaction, base_path: str) -> View | None:
    """What the distribution `base_path` serves, or None when there is no such distribution."""
    rows = await txn.execute(
        "SELECT r.id, r.name, r.latest_version, d.version FROM distributions d "
        "JOIN repositories r ON r.id = d.repository_id WHERE d.base_path = ?",
        (base_path,),
    )
    if not rows:
        return None
    repository_id, name, latest, pinned = rows[0]
    return View(Repository(repository_id, name, latest), pinned)


#: The repository a push to a base path writes to, with its retain_versions,
#: when that base path is an unpinned distribution: every push but the first to
#: a name. One statement finds the distribution and locks the repository row.
_PUSH_TARGET = (
    "SELECT id, name, latest_version, retain_versions FROM repositories WHERE id = "
    "(SELECT repository_id FROM distributions WHERE base_path = ? AND version IS NULL)"
)


async def push_target(
    txn: ITransaction, base_path: str, now: float
) -> tuple[Repository, int | None]:
    """The repository a push to `base_path` writes to, its row locked, and its retain_versions.

    The repository of the distribution `base_path`; when there is none, the
    repository of that name (created if new) and a distribution serving it.
    A distribution pinned to a version takes no pushes: DENIED. The
    retain_versions is None when every version is kept.
    """
    rows = await txn.execute(_PUSH_TARGET + txn.for_update, (base_path,))
    if rows:
        repository_id, name, latest, keep = rows[0]
        return Repository(repository_id, name, latest), keep
    view = await find_view(txn, base_path)
    if view is None:
        repository = await ensure_repository(txn, base_path, now)
        await txn.execute(
            "INSERT INTO distributions (base_path, repository_id, version, created) "
            "VALUES (?, ?, NULL, ?) ON CONFLICT (base_path) DO NOTHING",
            (base_path, repository.id, now),
        )
    else:
        _refuse_pinned(view, base_path)
        repository = await existing_repository(txn, view.repository.name, lock=True)
    rows = await txn.execute(
        "SELECT retain_versions FROM repositories WHERE id = ?", (repository.id,)
    )
    return repository, rows[0][0]


async def delete_target(txn: ITransaction, base_path: str) -> Repository:
    """The repository a delete through `base_path` changes, its row locked; NAME_UNKNOWN if none.

    A distribution pinned to a version takes no deletes: DENIED.
    """
    view = await find_view(txn, base_path)
    if view is None:
        raise NameUnknown(base_path)
    _refuse_pinned(view, base_path)
    return await existing_repository(txn, view.repository.name, lock=True)


def _refuse_pinned(view: View, base_path: str) -> None:
    if view.pinned is not None:
        raise DistributionPinned(base_path, view.repository.name, view.pinned)


async def check_writable(txn: ITransaction, base_path: str) -> None:
    """Refuse with DENIED, before any byte is sent, a push to a pinned distribution."""
    view = await find_view(txn, base_path)
    if view is not None:
        _refuse_pinned(view, base_path)


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
        raise RepositoryExists(name)
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
    repository = await existing_repository(txn, name)
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
    repository = await existing_repository(txn, name, lock=True)
    # Explicit rather than trusting ON DELETE CASCADE: SQLite enforces it
    # only with its foreign_keys pragma on.
    for table in ("distributions", "staged_content", "repository_content",
                  "repository_versions"):
        await txn.execute(f"DELETE FROM {table} WHERE repository_id = ?", (repository.id,))
    await txn.execute("DELETE FROM repositories WHERE id = ?", (repository.id,))


