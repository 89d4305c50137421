"""The history of a repository: summaries, diffs, and versions made by hand.

Rollback, modify, version deletion and retention, as functions of one
transaction (`txn`, an `ITransaction`), like `versions`. A version made here
goes through the same gate as a push: under the repository's row lock, its
whole content must be closed (every tag's manifest, every manifest's child
manifests and blobs present in it) and every blob it adds must still have its
bytes, or nothing changes.

Deleting a version folds its changes into the next one, as Pulp does: what
it added counts as added by the next version, what it removed as removed by
the next version, and what it added that the next removed vanishes. Every
remaining version keeps exactly the content it had.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ocireg.digest import Digest
from ocireg.errors import (
    CONTENT_UNKNOWN,
    INVALID,
    STATE_CONFLICT,
    VERSION_UNKNOWN,
    RegistryError,
)
from ocireg.interfaces import IBlobStore, ITransaction
from ocireg.versions import (
    Repository,
    _add,
    _existing_repository,
    _new_version,
    _remove,
)

#: The kinds of content, in the order listings show them.
KINDS = ("tag", "manifest", "blob")

#: What a version holds: kind -> name -> digest (for manifests and blobs name = digest).
Content = dict[str, dict[str, str]]


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


@attrs.frozen
class Change:
    """The outcome of a hand-made change: the latest version, and whether it is new."""

    version: int
    created: bool


@attrs.frozen
class Modification:
    """What `modify` changes; references are resolved in the source version.

    `add_tags` maps each new tag to a tag or manifest digest of the source.
    """

    add_tags: Mapping[str, str] = attrs.field(factory=dict)
    remove_tags: tuple[str, ...] = ()
    add_manifests: tuple[str, ...] = ()
    remove_manifests: tuple[str, ...] = ()
    source_repository: str | None = None
    source_version: int | None = None

    def is_empty(self) -> bool:
        return not (self.add_tags or self.remove_tags or self.add_manifests
                    or self.remove_manifests)


def _counts(by_kind: Mapping[str, int]) -> Counts:
    return Counts(by_kind.get("tag", 0), by_kind.get("manifest", 0), by_kind.get("blob", 0))


async def version_exists(txn: ITransaction, repository: Repository, number: int) -> None:
    """Raise VERSION_UNKNOWN unless `repository` has version `number`."""
    rows = await txn.execute(
        "SELECT 1 FROM repository_versions WHERE repository_id = ? AND number = ?",
        (repository.id, number),
    )
    if not rows:
        raise RegistryError(
            VERSION_UNKNOWN,
            f"repository {repository.name!r} has no version {number}",
            {"repository": repository.name, "version": number},
        )


async def summaries(txn: ITransaction, name: str) -> list[VersionSummary]:
    """Every version of `name`, oldest first, with counts of what it added, removed and holds."""
    repository = await _existing_repository(txn, name)
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
    repository = await _existing_repository(txn, name)
    await version_exists(txn, repository, number)
    raise AssertionError("unreachable: the version exists but has no summary")


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


async def content_page(
    txn: ITransaction, name: str, number: int, kind: str, limit: int, after: str | None
) -> list[tuple[str, str]]:
    """(name, digest) of content of `kind` in version `number` of `name`, by name after `after`."""
    repository = await _existing_repository(txn, name)
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
    repository = await _existing_repository(txn, name)
    await version_exists(txn, repository, base)
    await version_exists(txn, repository, target)
    return _diff(
        base, target,
        await content_at(txn, repository, base),
        await content_at(txn, repository, target),
    )


# Versions made by hand


async def _references(txn: ITransaction, manifests: set[str]) -> dict[str, list[tuple[str, str]]]:
    """manifest -> its (kind, digest) references, for each of `manifests`."""
    found: dict[str, list[tuple[str, str]]] = {m: [] for m in manifests}
    ordered = sorted(manifests)
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        rows = await txn.execute(
            "SELECT manifest, kind, digest FROM manifest_references "
            f"WHERE manifest IN ({', '.join('?' * len(chunk))})",
            tuple(chunk),
        )
        for manifest, kind, digest in rows:
            found[manifest].append((kind, digest))
    return found


async def _closure(
    txn: ITransaction, digest: str, held: Content, where: str
) -> tuple[set[str], set[str]]:
    """The manifests and blobs `digest` needs, each held by `held`; else CONTENT_UNKNOWN."""
    manifests: set[str] = set()
    blobs: set[str] = set()
    frontier = {digest}
    while frontier:
        missing = sorted(frontier - held["manifest"].keys())
        if missing:
            raise RegistryError(
                CONTENT_UNKNOWN, f"manifest {missing[0]} is not in {where}",
                {"manifests": missing[:20]},
            )
        manifests |= frontier
        children: set[str] = set()
        for references in (await _references(txn, frontier)).values():
            for kind, target in references:
                (blobs if kind == "blob" else children).add(target)
        frontier = children - manifests
    missing = sorted(blobs - held["blob"].keys())
    if missing:
        raise RegistryError(
            CONTENT_UNKNOWN, f"blob {missing[0]} is not in {where}", {"blobs": missing[:20]}
        )
    return manifests, blobs


async def _check_closed(
    txn: ITransaction, blob_store: IBlobStore, repository: Repository, target: Content,
    added_blobs: set[str],
) -> None:
    """`target` is a whole, pullable version: refuse with a conflict otherwise."""
    dangling = sorted(set(target["tag"].values()) - target["manifest"].keys())
    if dangling:
        raise RegistryError(
            STATE_CONFLICT, f"a tag would point at manifest {dangling[0]}, which is not there",
            {"manifests": dangling[:20]},
        )
    for manifest, references in (await _references(txn, set(target["manifest"]))).items():
        for kind, digest in references:
            if digest not in target[kind]:
                raise RegistryError(
                    STATE_CONFLICT,
                    f"manifest {manifest} needs {kind} {digest}, which would not be there",
                    {"manifest": manifest, kind: digest},
                )
    known: set[str] = set()
    ordered = sorted(added_blobs)
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        rows = await txn.execute(
            f"SELECT digest FROM blobs WHERE digest IN ({', '.join('?' * len(chunk))})",
            tuple(chunk),
        )
        known.update(r[0] for r in rows)
    gone = sorted(added_blobs - known)
    if not gone:
        gone = [str(d) for d in await blob_store.missing_blobs([Digest.parse(b) for b in ordered])]
    if gone:
        raise RegistryError(
            STATE_CONFLICT,
            f"the bytes of blob {gone[0]} are gone: push it to {repository.name!r} again first",
            {"blobs": gone[:20]},
        )


async def _become(
    txn: ITransaction, blob_store: IBlobStore, repository: Repository, target: Content,
    reason: str, now: float,
) -> Change:
    """Make a new version of `repository` holding exactly `target`; none if nothing changes."""
    current = await content_at(txn, repository, repository.latest_version)
    removals = {
        kind: sorted(n for n, d in current[kind].items() if target[kind].get(n) != d)
        for kind in KINDS
    }
    additions = {
        kind: sorted((n, d) for n, d in target[kind].items() if current[kind].get(n) != d)
        for kind in KINDS
    }
    if not any(removals.values()) and not any(additions.values()):
        return Change(repository.latest_version, created=False)
    await _check_closed(txn, blob_store, repository, target, {n for n, _ in additions["blob"]})
    version = await _new_version(txn, repository, reason, now)
    for kind in KINDS:
        await _remove(txn, repository.id, version, kind, removals[kind])
    await _add(
        txn, repository.id, version,
        [(kind, n, d) for kind in KINDS for n, d in additions[kind]],
    )
    return Change(version, created=True)


async def rollback(
    txn: ITransaction, blob_store: IBlobStore, name: str, number: int, now: float
) -> Change:
    """A new version of `name` whose content equals version `number`'s."""
    repository = await _existing_repository(txn, name, lock=True)
    await version_exists(txn, repository, number)
    target = await content_at(txn, repository, number)
    return await _become(txn, blob_store, repository, target, f"rollback to {number}", now)


async def modify(
    txn: ITransaction, blob_store: IBlobStore, name: str, change: Modification, now: float
) -> Change:
    """A new version of `name`: the latest with `change` applied, each manifest with its closure.

    Removals come first. A removed manifest takes its tags with it, and the
    blobs no remaining manifest needs; its child manifests stay. Added
    manifests and tags come from the source version (default: the latest
    version of `name`), with everything they need.
    """
    repository = await _existing_repository(txn, name, lock=True)
    current = await content_at(txn, repository, repository.latest_version)
    target: Content = {kind: dict(held) for kind, held in current.items()}
    for i, tag in enumerate(change.remove_tags):
        if target["tag"].pop(tag, None) is None:
            raise RegistryError(
                CONTENT_UNKNOWN, f"tag {tag!r} is not in repository {name!r}",
                {"field": f"remove_tags[{i}]", "tag": tag},
            )
    for i, digest in enumerate(change.remove_manifests):
        if target["manifest"].pop(digest, None) is None:
            raise RegistryError(
                CONTENT_UNKNOWN, f"manifest {digest} is not in repository {name!r}",
                {"field": f"remove_manifests[{i}]", "digest": digest},
            )
        target["tag"] = {t: d for t, d in target["tag"].items() if d != digest}
    if change.remove_manifests:
        needed = {
            target_digest
            for references in (await _references(txn, set(target["manifest"]))).values()
            for kind, target_digest in references
            if kind == "blob"
        }
        removed = await _references(txn, set(change.remove_manifests))
        for references in removed.values():
            for kind, digest in references:
                if kind == "blob" and digest not in needed:
                    target["blob"].pop(digest, None)

    if change.add_tags or change.add_manifests:
        source_name = change.source_repository or name
        source = (
            repository if source_name == name
            else await _existing_repository(txn, source_name)
        )
        number = source.latest_version if change.source_version is None else change.source_version
        await version_exists(txn, source, number)
        held = await content_at(txn, source, number)
        where = f"version {number} of repository {source_name!r}"
        wanted: list[tuple[str, str, str | None]] = [
            (f"add_manifests[{i}]", digest, None) for i, digest in enumerate(change.add_manifests)
        ]
        for tag, reference in change.add_tags.items():
            digest = reference if ":" in reference else held["tag"].get(reference)
            if digest is None:
                raise RegistryError(
                    CONTENT_UNKNOWN, f"tag {reference!r} is not in {where}",
                    {"field": f"add_tags.{tag}", "tag": reference},
                )
            wanted.append((f"add_tags.{tag}", digest, tag))
        for field, digest, tag in wanted:
            try:
                manifests, blobs = await _closure(txn, digest, held, where)
            except RegistryError as e:
                e.detail = {"field": field, **(e.detail or {})}
                raise
            target["manifest"].update((m, m) for m in manifests)
            target["blob"].update((b, b) for b in blobs)
            if tag is not None:
                target["tag"][tag] = digest
    return await _become(txn, blob_store, repository, target, _reason(change), now)


def _reason(change: Modification) -> str:
    parts = []
    source = ""
    if change.source_repository is not None or change.source_version is not None:
        source = f" from {change.source_repository or 'this repository'}"
        if change.source_version is not None:
            source += f" version {change.source_version}"
    if change.add_tags:
        parts.append("add tag " + ", ".join(sorted(change.add_tags)) + source)
    if change.remove_tags:
        parts.append("remove tag " + ", ".join(change.remove_tags))
    if change.add_manifests:
        parts.append(f"add {len(change.add_manifests)} manifest(s){source}")
    if change.remove_manifests:
        parts.append(f"remove {len(change.remove_manifests)} manifest(s)")
    return "modify: " + "; ".join(parts) if parts else "modify"


async def _pinned_to(txn: ITransaction, repository: Repository, number: int) -> list[str]:
    rows = await txn.execute(
        "SELECT base_path FROM distributions WHERE repository_id = ? AND version = ? "
        "ORDER BY base_path",
        (repository.id, number),
    )
    return [r[0] for r in rows]


#: What a version's reason gains when deleted versions fold into it: their
#: own reasons, in order, "N: reason" each (see `_folded_reason`).
_FOLDED = " (with deleted version"
_FOLDED_SEPARATOR = " | "
#: The most folded reasons a reason keeps word for word; older ones shrink to
#: their versions' numbers, so that retention, which folds a version at every
#: push, does not grow one reason without bound.
_FOLDED_SHOWN = 5


def _split_reason(reason: str) -> tuple[str, list[str]]:
    """A reason's own part, and the "N: reason" (or "N-M") entries of what folded into it."""
    at = reason.find(_FOLDED)
    if at < 0 or not reason.endswith(")"):
        return reason, []
    entries = reason[at + len(_FOLDED) : -1].removeprefix("s").strip()
    return reason[:at], entries.split(_FOLDED_SEPARATOR)


def _folded_reason(following: str, number: int, folded: str) -> str:
    """The reason of the version that version `number` (reason `folded`) folds into.

    The versions folded into one are always a run of consecutive numbers (the
    deleted ones since the previous remaining version), oldest first.
    """
    own, later = _split_reason(following)
    folded_own, earlier = _split_reason(folded)
    entries = [*earlier, f"{number}: {folded_own}", *later]
    if len(entries) > _FOLDED_SHOWN:
        hidden = entries[: len(entries) - _FOLDED_SHOWN + 1]
        first = hidden[0].split(":", 1)[0].split("-")[0]
        last = hidden[-1].split(":", 1)[0].split("-")[-1]
        entries = [f"{first}-{last}", *entries[len(hidden) :]]
    plural = "s" if len(entries) > 1 or "-" in entries[0].split(":", 1)[0] else ""
    return f"{own}{_FOLDED}{plural} {_FOLDED_SEPARATOR.join(entries)})"


#: Reasons that name another version of their repository by number.
_NAMING_VERSION = ("rollback to {n}", "from this repository version {n}")
_DELETED_SINCE = " (deleted since)"


def _mark_deleted(reason: str, number: int) -> str:
    """`reason` with each mention of version `number` marked as deleted since."""
    for pattern in _NAMING_VERSION:
        mention = pattern.format(n=number)
        at = 0
        while (at := reason.find(mention, at)) >= 0:
            end = at + len(mention)
            if reason[end : end + 1].isdigit() or reason.startswith(_DELETED_SINCE, end):
                at = end
                continue
            reason = reason[:end] + _DELETED_SINCE + reason[end:]
            at = end + len(_DELETED_SINCE)
    return reason


async def _fold(txn: ITransaction, repository: Repository, number: int) -> None:
    """Delete version `number` (neither 0 nor the latest), its changes folded into the next.

    The next version's reason gains the deleted one's; reasons that name
    version `number` say it is deleted since.
    """
    (_, base, reason), (following, _, following_reason) = await txn.execute(
        "SELECT number, base_version, reason FROM repository_versions WHERE repository_id = ? "
        "AND number >= ? ORDER BY number LIMIT 2",
        (repository.id, number),
    )
    # Added here and removed by the next: in no remaining version.
    await txn.execute(
        "DELETE FROM repository_content WHERE repository_id = ? AND version_added = ? "
        "AND version_removed = ?",
        (repository.id, number, following),
    )
    await txn.execute(
        "UPDATE repository_content SET version_added = ? WHERE repository_id = ? "
        "AND version_added = ?",
        (following, repository.id, number),
    )
    await txn.execute(
        "UPDATE repository_content SET version_removed = ? WHERE repository_id = ? "
        "AND version_removed = ?",
        (following, repository.id, number),
    )
    await txn.execute(
        "UPDATE repository_versions SET base_version = ? WHERE repository_id = ? "
        "AND base_version = ?",
        (base, repository.id, number),
    )
    await txn.execute(
        "DELETE FROM repository_versions WHERE repository_id = ? AND number = ?",
        (repository.id, number),
    )
    reasons = {following: _folded_reason(following_reason, number, reason)}
    naming = await txn.execute(
        "SELECT number, reason FROM repository_versions WHERE repository_id = ? "
        f"AND number > ? AND ({' OR '.join(['reason LIKE ?'] * len(_NAMING_VERSION))})",
        (repository.id, number,
         *(f"%{p.format(n=number)}%" for p in _NAMING_VERSION)),
    )
    for other, other_reason in naming:
        reasons[other] = _mark_deleted(reasons.get(other, other_reason), number)
    for other, new_reason in sorted(reasons.items()):
        await txn.execute(
            "UPDATE repository_versions SET reason = ? WHERE repository_id = ? AND number = ?",
            (new_reason, repository.id, other),
        )


async def delete_version(txn: ITransaction, name: str, number: int) -> None:
    """Delete version `number` of `name`; refused for version 0, the latest and pinned ones."""
    repository = await _existing_repository(txn, name, lock=True)
    await version_exists(txn, repository, number)
    if number == 0 or number == repository.latest_version:
        which = "version 0, the empty start," if number == 0 else "the latest version"
        raise RegistryError(
            STATE_CONFLICT, f"{which} of repository {name!r} cannot be deleted",
            {"repository": name, "version": number},
        )
    pinned = await _pinned_to(txn, repository, number)
    if pinned:
        raise RegistryError(
            STATE_CONFLICT,
            f"version {number} of repository {name!r} is pinned by distribution "
            f"{pinned[0]!r}: unpin it first",
            {"repository": name, "version": number, "distributions": pinned},
        )
    await _fold(txn, repository, number)


async def set_retention(txn: ITransaction, name: str, keep: int | None) -> None:
    """Keep the last `keep` versions of `name` from now on (None: all), and prune now."""
    if keep is not None and keep < 1:
        raise RegistryError(INVALID, "retain_versions must be at least 1, or null",
                            {"field": "retain_versions"})
    repository = await _existing_repository(txn, name, lock=True)
    await txn.execute(
        "UPDATE repositories SET retain_versions = ? WHERE id = ?", (keep, repository.id)
    )
    await retain(txn, name)


async def retain(txn: ITransaction, name: str) -> list[int]:
    """Delete the versions of `name` older than its last `retain_versions`; their numbers.

    Version 0 (the empty start) and versions a distribution is pinned to stay.
    Runs after each new version, in its transaction, with the row lock held.
    """
    rows = await txn.execute(
        "SELECT id, name, latest_version, retain_versions FROM repositories WHERE name = ?",
        (name,),
    )
    return await _retain(txn, rows)


async def retain_through(txn: ITransaction, base_path: str) -> list[int]:
    """`retain` for the repository a push to `base_path` wrote to."""
    rows = await txn.execute(
        "SELECT r.id, r.name, r.latest_version, r.retain_versions FROM distributions d "
        "JOIN repositories r ON r.id = d.repository_id WHERE d.base_path = ?",
        (base_path,),
    )
    return await _retain(txn, rows)


async def _retain(txn: ITransaction, rows: list[tuple]) -> list[int]:
    """`retain` for the repository row in `rows` (id, name, latest_version, retain_versions)."""
    if not rows or rows[0][3] is None:
        return []
    repository, keep = Repository(*rows[0][:3]), rows[0][3]
    numbers = [
        r[0]
        for r in await txn.execute(
            "SELECT number FROM repository_versions WHERE repository_id = ? AND number > 0 "
            "ORDER BY number",
            (repository.id,),
        )
    ]
    pinned = {
        r[0]
        for r in await txn.execute(
            "SELECT version FROM distributions WHERE repository_id = ? AND version IS NOT NULL",
            (repository.id,),
        )
    }
    doomed = [n for n in numbers[: max(len(numbers) - keep, 0)] if n not in pinned]
    for number in doomed:
        await _fold(txn, repository, number)
    return doomed
