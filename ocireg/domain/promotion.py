"""Promotion: a tag write (or an expired staging) makes a manifest's closure a new version.

Under the repository's row lock: every child manifest and blob the manifest
needs must be in the latest version or in staging, with the sizes its
descriptors declare, and every blob's bytes must be stored; then one version
adds what the latest lacks and moves the tag, and the closure leaves
staging. When nothing would change, no version is made. `walk_manifests` is
the one walk of a manifest's closure; `ocireg.domain.rewrite` walks with it too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import attrs

from ocireg.db.batch import chunks, marks
from ocireg.digest import Digest
from ocireg.domain.content import add_content, new_version, remove_content, store_manifest
from ocireg.domain.errors import BlobBytesMissing, ClosureIncomplete, DeclaredSizeWrong
from ocireg.domain.repositories import Repository
from ocireg.domain.staging import unstage_held
from ocireg.interfaces import IBlobStore, ITransaction
from ocireg.manifest import Manifest, parse_manifest


@attrs.frozen
class Promotion:
    """The outcome of a tag write: the version that holds it, and whether it is new."""

    version: int
    created: bool


@attrs.frozen
class Closure:
    """What a tag write's manifest needs, and what of it the repository holds where."""

    manifests: frozenset[str]
    blobs: frozenset[str]
    #: The (kind, digest) pairs of the closure that the latest version holds.
    current: frozenset[tuple[str, str]]
    #: The (kind, digest) pairs of the closure that the staging version holds.
    staged: frozenset[tuple[str, str]]
    #: Whether the manifest itself is in the global content already.
    stored: bool
    #: The manifest digest the tag names in the latest version, if it names one.
    tagged: str | None


#: Reads one level of a closure: given the manifests first met at that level,
#: checks that they are there (raising otherwise) and returns the manifests
#: they reference.
ReadLevel = Callable[[set[str]], Awaitable[set[str]]]


async def walk_manifests(
    frontier: set[str], read_level: ReadLevel, seen: Iterable[str] = ()
) -> set[str]:
    """Every manifest reachable from `frontier` through child manifests, level by level.

    `read_level` is called once per level, with the manifests not walked yet,
    so that each level costs its reader one round of statements. Manifests in
    `seen` count as walked already. Returns every manifest walked, `seen`'s
    included.
    """
    walked = set(seen)
    while frontier:
        frontier = frontier - walked
        if not frontier:
            break
        children = await read_level(frontier)
        walked |= frontier
        frontier = children
    return walked


def _held(kind: str, column: str) -> str:
    """Two SQL columns: does the latest version, does the staging version hold `column`?

    Each takes the repository id as its parameter.
    """
    return (
        "EXISTS (SELECT 1 FROM repository_content c WHERE c.repository_id = ? "
        f"AND c.kind = '{kind}' AND c.name = {column} AND c.version_removed IS NULL), "
        "EXISTS (SELECT 1 FROM staged_content s WHERE s.repository_id = ? "
        f"AND s.kind = '{kind}' AND s.digest = {column})"
    )


async def closure_of(
    txn: ITransaction, repository: Repository, manifest: Manifest, tag: str | None
) -> Closure:
    """The manifests and blobs that `manifest` needs, all present in the repository.

    Child manifests and blobs count as present when the latest version or the
    staging version holds them and their metadata exists; anything else fails
    the whole closure with MANIFEST_BLOB_UNKNOWN. Every descriptor's size, the
    manifest's and its children's, must be the stored size: SIZE_INVALID
    otherwise, since a client checks the bytes it pulls against it. One
    statement per level of child manifests, then one for the blobs, the
    manifest itself and the tag: on a networked database each statement is a
    round trip.
    """
    root = str(manifest.digest)
    blobs = {str(d) for d in manifest.blobs}
    #: (digest, declared size, the manifest declaring it), checked once all sizes are known.
    declared = [(str(d), size, root) for d, size in manifest.sizes]
    stored_sizes: dict[str, int] = {}
    current: set[tuple[str, str]] = set()
    staged: set[tuple[str, str]] = set()

    async def read_level(level: set[str]) -> set[str]:
        present: set[str] = set()
        children: set[str] = set()
        for chunk in chunks(sorted(level)):
            # The bodies rather than manifest_references: a child pushed by digest
            # was checked against nothing, and its descriptors' sizes are only there.
            rows = await txn.execute(
                f"SELECT m.digest, {_held('manifest', 'm.digest')}, m.media_type, m.body "
                f"FROM manifests m WHERE m.digest IN ({marks(len(chunk))})",
                (repository.id, repository.id, *chunk),
            )
            for digest, in_current, in_staging, media_type, body in rows:
                if not (in_current or in_staging):
                    continue
                present.add(digest)
                if in_current:
                    current.add(("manifest", digest))
                if in_staging:
                    staged.add(("manifest", digest))
                child = parse_manifest(bytes(body), media_type)
                stored_sizes[digest] = child.size
                blobs.update(str(d) for d in child.blobs)
                children.update(str(d) for d in child.manifests)
                declared.extend((str(d), size, digest) for d, size in child.sizes)
        if present != level:
            missing = sorted(level - present)
            raise ClosureIncomplete("manifest", tuple(missing), repository.name)
        return children

    manifests = await walk_manifests(
        {str(d) for d in manifest.manifests}, read_level, seen=[root]
    )
    known: set[str] = set()
    stored = False
    tagged = None
    # The manifest itself and the tag ride along with the first (usually only) chunk.
    for i, chunk in enumerate(list(chunks(sorted(blobs))) or [[]]):
        branches: list[str] = []
        params: list[object] = []
        if chunk:
            branches.append(
                f"SELECT 'blob', b.digest, {_held('blob', 'b.digest')}, b.size FROM blobs b "
                f"WHERE b.digest IN ({marks(len(chunk))})"
            )
            params += [repository.id, repository.id, *chunk]
        if i == 0:
            branches.append(
                f"SELECT 'manifest', m.digest, {_held('manifest', 'm.digest')}, NULL "
                "FROM manifests m WHERE m.digest = ?"
            )
            params += [repository.id, repository.id, root]
            if tag is not None:
                branches.append(
                    "SELECT 'tag', c.digest, TRUE, FALSE, NULL FROM repository_content c "
                    "WHERE c.repository_id = ? AND c.kind = 'tag' AND c.name = ? "
                    "AND c.version_removed IS NULL"
                )
                params += [repository.id, tag]
        for kind, digest, in_current, in_staging, size in await txn.execute(
            " UNION ALL ".join(branches), tuple(params)
        ):
            if kind == "tag":
                tagged = digest
                continue
            if kind == "manifest":
                stored = True
            elif in_current or in_staging:
                known.add(digest)
                stored_sizes[digest] = size
            if in_current:
                current.add((kind, digest))
            if in_staging:
                staged.add((kind, digest))
    if known != blobs:
        missing = sorted(blobs - known)
        raise ClosureIncomplete("blob", tuple(missing), repository.name)
    for digest, size, parent in declared:
        if stored_sizes[digest] != size:
            raise DeclaredSizeWrong(digest, parent, size, stored_sizes[digest])
    return Closure(
        frozenset(manifests), frozenset(blobs), frozenset(current), frozenset(staged),
        stored, tagged,
    )


async def promote(
    txn: ITransaction,
    blob_store: IBlobStore,
    repository: Repository,
    manifest: Manifest,
    tag: str | None,
    now: float,
    reason: str | None = None,
) -> Promotion:
    """Make `manifest`, its whole closure and `tag` (if any) part of a new version of `repository`.

    The caller has locked `repository`'s row (`repositories.push_target`).
    `reason` is the version's (default: the push of the tag or digest).
    """
    closure = await closure_of(txn, repository, manifest, tag)
    if not closure.stored:
        await store_manifest(txn, manifest, now)
    missing = await blob_store.missing_blobs([Digest.parse(b) for b in sorted(closure.blobs)])
    if missing:
        raise BlobBytesMissing(missing)
    digest = str(manifest.digest)
    moves_tag = tag is not None and closure.tagged != digest
    # Read under the lock, which every staging takes too: nothing else is staged meanwhile.
    if closure.staged:
        await unstage_held(txn, repository.id, closure.staged)
    added = [
        (kind, d, d)
        for kind, digests in (("manifest", closure.manifests), ("blob", closure.blobs))
        for d in sorted(digests)
        if (kind, d) not in closure.current
    ]
    if not (added or moves_tag):
        return Promotion(repository.latest_version, created=False)

    if reason is None:
        reason = f"push tag {tag}" if tag is not None else f"push {digest}"
    version = await new_version(txn, repository, reason, now)
    if moves_tag:
        assert tag is not None
        if closure.tagged is not None:
            await remove_content(txn, repository.id, version, "tag", [tag])
        added.insert(0, ("tag", tag, digest))
    await add_content(txn, repository.id, version, added)
    return Promotion(version, created=True)


