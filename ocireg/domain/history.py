"""The history of a repository, read: its versions, what each holds, and diffs between them.

Functions of one transaction (`txn`, an `ITransaction`). Versions are made by
pushes (`promotion`, `removal`) and by hand (`rewrite`), and deleted by
folding (`folding`).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ocireg.domain.content import KINDS, Content, content_at, version_exists
from ocireg.domain.repositories import existing_repository
from ocireg.interfaces import ITransaction


@attrs.frozen
class Version:
    number: int
    base_version: int | None
    reason: str
    created: float


@attrs.frozen
class Counts:
    tags: int = 0
    manifests: int = 0
    blobs: int = 0

    def to_json(self) -> dict[str, int]:
        return attrs.asdict(self)


@attrs.frozen
class VersionSummary:
    number: int
    base_version: int | None
    reason: str
    created: float
    added: Counts
    removed: Counts
    present: Counts


@attrs.frozen
class TagMove:
    tag: str
    old: str
    new: str


@attrs.frozen
class Diff:
    """What changed from version `base` to version `target` of one repository."""

    base: int
    target: int
    tags_added: Mapping[str, str]
    tags_removed: Mapping[str, str]
    tags_moved: tuple[TagMove, ...]
    manifests_added: tuple[str, ...]
    manifests_removed: tuple[str, ...]
    blobs_added: tuple[str, ...]
    blobs_removed: tuple[str, ...]


def _counts(by_kind: Mapping[str, int]) -> Counts:
    return Counts(by_kind.get("tag", 0), by_kind.get("manifest", 0), by_kind.get("blob", 0))


async def versions(txn: ITransaction, name: str) -> list[Version]:
    """Every version of repository `name`, oldest first."""
    repository = await existing_repository(txn, name)
    rows = await txn.execute(
        "SELECT number, base_version, reason, created FROM repository_versions "
        "WHERE repository_id = ? ORDER BY number",
        (repository.id,),
    )
    return [Version(*row) for row in rows]


async def version_content(
    txn: ITransaction, name: str, number: int | None = None
) -> Content:
    """What version `number` (default: the latest) of `name` holds, by kind: name -> digest."""
    repository = await existing_repository(txn, name)
    if number is None:
        number = repository.latest_version
    return await content_at(txn, repository, number)


async def summaries(txn: ITransaction, name: str) -> list[VersionSummary]:
    """Every version of `name`, oldest first, with counts of what it added, removed and holds."""
    repository = await existing_repository(txn, name)
    rows = await txn.execute(
        "SELECT number, base_version, reason, created FROM repository_versions "
        "WHERE repository_id = ? ORDER BY number",
        (repository.id,),
    )
    added: dict[int, dict[str, int]] = {}
    removed: dict[int, dict[str, int]] = {}
    for column, into in (("version_added", added), ("version_removed", removed)):
        counted = await txn.execute(
            f"SELECT {column}, kind, count(*) FROM repository_content "
            f"WHERE repository_id = ? AND {column} IS NOT NULL GROUP BY {column}, kind",
            (repository.id,),
        )
        for number, kind, n in counted:
            into.setdefault(number, {})[kind] = n
    present = dict.fromkeys(KINDS, 0)
    found = []
    # Every row's version_added and version_removed name an existing version
    # (deletion folds them into the next), so a running sum gives what each holds.
    for number, base_version, reason, created in rows:
        plus, minus = added.get(number, {}), removed.get(number, {})
        for kind in KINDS:
            present[kind] += plus.get(kind, 0) - minus.get(kind, 0)
        found.append(
            VersionSummary(number, base_version, reason, created, _counts(plus), _counts(minus),
                           _counts(present))
        )
    return found


async def summary(txn: ITransaction, name: str, number: int) -> VersionSummary:
    for found in await summaries(txn, name):
        if found.number == number:
            return found
    repository = await existing_repository(txn, name)
    await version_exists(txn, repository, number)
    raise AssertionError("unreachable: the version exists but has no summary")


async def content_page(
    txn: ITransaction, name: str, number: int, kind: str, limit: int, after: str | None
) -> list[tuple[str, str]]:
    """(name, digest) of content of `kind` in version `number` of `name`, by name after `after`."""
    repository = await existing_repository(txn, name)
    await version_exists(txn, repository, number)
    sql = (
        "SELECT name, digest FROM repository_content WHERE repository_id = ? AND kind = ? "
        "AND version_added <= ? AND (version_removed IS NULL OR version_removed > ?)"
    )
    params: tuple = (repository.id, kind, number, number)
    if after is not None:
        sql += " AND name > ?"
        params += (after,)
    rows = await txn.execute(sql + " ORDER BY name LIMIT ?", (*params, limit))
    return [(r[0], r[1]) for r in rows]


def _diff(base: int, target: int, old: Content, new: Content) -> Diff:
    old_tags, new_tags = old["tag"], new["tag"]
    return Diff(
        base,
        target,
        {t: d for t, d in sorted(new_tags.items()) if t not in old_tags},
        {t: d for t, d in sorted(old_tags.items()) if t not in new_tags},
        tuple(
            TagMove(t, old_tags[t], d)
            for t, d in sorted(new_tags.items())
            if t in old_tags and old_tags[t] != d
        ),
        tuple(sorted(new["manifest"].keys() - old["manifest"].keys())),
        tuple(sorted(old["manifest"].keys() - new["manifest"].keys())),
        tuple(sorted(new["blob"].keys() - old["blob"].keys())),
        tuple(sorted(old["blob"].keys() - new["blob"].keys())),
    )


async def diff(txn: ITransaction, name: str, base: int, target: int) -> Diff:
    """What changed from version `base` to version `target` of `name` (either order)."""
    repository = await existing_repository(txn, name)
    await version_exists(txn, repository, base)
    await version_exists(txn, repository, target)
    return _diff(
        base, target,
        await content_at(txn, repository, base),
        await content_at(txn, repository, target),
    )


