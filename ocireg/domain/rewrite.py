"""Versions made by hand: rollback to an earlier version, and modify (add or remove content).

A version made here goes through the same gate as a push: under the
repository's row lock, its whole content must be closed (every tag's
manifest, every manifest's child manifests and blobs present in it) and
every blob it adds must still have its bytes, or nothing changes.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ocireg.db.batch import chunks, marks
from ocireg.digest import Digest
from ocireg.domain.content import (
    KINDS,
    Content,
    add_content,
    content_at,
    new_version,
    references,
    remove_content,
    version_exists,
)
from ocireg.domain.errors import (
    BytesGoneFromVersion,
    ContentUnknown,
    DanglingReference,
    DanglingTag,
    RemovedContentUnknown,
)
from ocireg.domain.promotion import walk_manifests
from ocireg.domain.repositories import Repository, existing_repository
from ocireg.interfaces import IBlobStore, ITransaction


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


async def _closure_in(
    txn: ITransaction, digest: str, held: Content, where: str
) -> tuple[set[str], set[str]]:
    """The manifests and blobs `digest` needs, each held by `held`; else CONTENT_UNKNOWN."""
    blobs: set[str] = set()

    async def read_level(level: set[str]) -> set[str]:
        missing = sorted(level - held["manifest"].keys())
        if missing:
            raise ContentUnknown("manifest", tuple(missing), where)
        children: set[str] = set()
        for referenced in (await references(txn, level)).values():
            for kind, target in referenced:
                (blobs if kind == "blob" else children).add(target)
        return children

    manifests = await walk_manifests({digest}, read_level)
    missing = sorted(blobs - held["blob"].keys())
    if missing:
        raise ContentUnknown("blob", tuple(missing), where)
    return manifests, blobs


async def _check_closed(
    txn: ITransaction, blob_store: IBlobStore, repository: Repository, target: Content,
    added_blobs: set[str],
) -> None:
    """`target` is a whole, pullable version: refuse with a conflict otherwise."""
    dangling = sorted(set(target["tag"].values()) - target["manifest"].keys())
    if dangling:
        raise DanglingTag(tuple(dangling))
    for manifest, referenced in (await references(txn, set(target["manifest"]))).items():
        for kind, digest in referenced:
            if digest not in target[kind]:
                raise DanglingReference(manifest, kind, digest)
    known: set[str] = set()
    ordered = sorted(added_blobs)
    for chunk in chunks(ordered):
        rows = await txn.execute(
            f"SELECT digest FROM blobs WHERE digest IN ({marks(len(chunk))})", tuple(chunk)
        )
        known.update(r[0] for r in rows)
    gone = sorted(added_blobs - known)
    if not gone:
        gone = [str(d) for d in await blob_store.missing_blobs([Digest.parse(b) for b in ordered])]
    if gone:
        raise BytesGoneFromVersion(repository.name, tuple(gone))


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
    version = await new_version(txn, repository, reason, now)
    for kind in KINDS:
        await remove_content(txn, repository.id, version, kind, removals[kind])
    await add_content(
        txn, repository.id, version,
        [(kind, n, d) for kind in KINDS for n, d in additions[kind]],
    )
    return Change(version, created=True)


async def rollback(
    txn: ITransaction, blob_store: IBlobStore, name: str, number: int, now: float
) -> Change:
    """A new version of `name` whose content equals version `number`'s."""
    repository = await existing_repository(txn, name, lock=True)
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
    repository = await existing_repository(txn, name, lock=True)
    current = await content_at(txn, repository, repository.latest_version)
    target: Content = {kind: dict(held) for kind, held in current.items()}
    for i, tag in enumerate(change.remove_tags):
        if target["tag"].pop(tag, None) is None:
            raise RemovedContentUnknown("tag", tag, name, f"remove_tags[{i}]")
    for i, digest in enumerate(change.remove_manifests):
        if target["manifest"].pop(digest, None) is None:
            raise RemovedContentUnknown("manifest", digest, name, f"remove_manifests[{i}]")
        target["tag"] = {t: d for t, d in target["tag"].items() if d != digest}
    if change.remove_manifests:
        needed = {
            target_digest
            for referenced in (await references(txn, set(target["manifest"]))).values()
            for kind, target_digest in referenced
            if kind == "blob"
        }
        removed = await references(txn, set(change.remove_manifests))
        for referenced in removed.values():
            for kind, digest in referenced:
                if kind == "blob" and digest not in needed:
                    target["blob"].pop(digest, None)

    if change.add_tags or change.add_manifests:
        source_name = change.source_repository or name
        source = (
            repository if source_name == name
            else await existing_repository(txn, source_name)
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
                raise ContentUnknown("tag", (reference,), where, f"add_tags.{tag}")
            wanted.append((f"add_tags.{tag}", digest, tag))
        for field, digest, tag in wanted:
            try:
                manifests, blobs = await _closure_in(txn, digest, held, where)
            except ContentUnknown as e:
                raise attrs.evolve(e, field=field) from None
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


