"""Repository versions: staging, promotion, closure and removal.

Every function here runs inside one transaction (`txn`, an `ITransaction`)
and knows nothing of HTTP or of which database serves it. Content is in
version n of a repository when `version_added <= n` and `version_removed` is
null or greater than n; the latest version's content is therefore the rows
whose `version_removed` is null.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import attrs

from ocireg.digest import Digest
from ocireg.errors import (
    BLOB_UNKNOWN,
    CONFLICT,
    DENIED,
    MANIFEST_BLOB_UNKNOWN,
    MANIFEST_UNKNOWN,
    NAME_UNKNOWN,
    SIZE_INVALID,
    RegistryError,
)
from ocireg.interfaces import IBlobStore, ITransaction
from ocireg.manifest import Descriptor, Manifest, parse_manifest

#: Most parameters one statement binds; SQLite's floor is 999.
_BATCH = 500


class BlobBytesMissing(RegistryError):
    """A tag write needs blobs whose metadata exists but whose bytes are gone."""

    def __init__(self, digests: list[Digest]) -> None:
        self.digests = digests
        super().__init__(
            MANIFEST_BLOB_UNKNOWN,
            f"the bytes of blob {digests[0]} are gone: push it again",
            {"blobs": [str(d) for d in digests[:20]]},
        )


async def forget_blobs(txn: ITransaction, digests: list[Digest]) -> None:
    """Drop the metadata of blobs whose bytes are gone, so HEAD stops claiming them.

    A client that sees 404 uploads the blob again, which heals the store.
    """
    for chunk in _chunks(sorted({str(d) for d in digests})):
        await txn.execute(
            f"DELETE FROM blobs WHERE digest IN ({_marks(len(chunk))})", tuple(chunk)
        )


@attrs.frozen
class Repository:
    id: int
    name: str
    latest_version: int


@attrs.frozen
class StoredManifest:
    digest: Digest
    media_type: str
    body: bytes = attrs.field(repr=False)


@attrs.frozen
class Promotion:
    """The outcome of a tag write: the version that holds it, and whether it is new."""

    version: int
    created: bool
    #: The repository's retain_versions as `promote` read it under the lock (None:
    #: every version is kept), so that a caller prunes only when there is a limit.
    retain_versions: int | None = None


@attrs.frozen
class Version:
    number: int
    base_version: int | None
    reason: str
    created: float


@attrs.frozen
class View:
    """What a registry API name (a distribution's base path) shows.

    The repository's latest version and its staging when `pinned` is None,
    else version `pinned` alone.
    """

    repository: Repository
    pinned: int | None = None


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), _BATCH):
        yield items[i : i + _BATCH]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


async def find_repository(txn: ITransaction, name: str, lock: bool = False) -> Repository | None:
    """The repository called `name`; with `lock`, its row is locked until commit."""
    rows = await txn.execute(
        "SELECT id, name, latest_version FROM repositories WHERE name = ?"
        + (txn.for_update if lock else ""),
        (name,),
    )
    return Repository(*rows[0]) if rows else None


async def _existing_repository(txn: ITransaction, name: str, lock: bool = False) -> Repository:
    repository = await find_repository(txn, name, lock)
    if repository is None:
        raise RegistryError(NAME_UNKNOWN, f"repository {name!r} is not known", {"name": name})
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
        return await _existing_repository(txn, name, lock=True)
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


async def writable_repository(txn: ITransaction, base_path: str, now: float) -> Repository:
    """The repository a push to `base_path` writes to, its row locked.

    The repository of the distribution `base_path`; when there is none, the
    repository of that name (created if new) and a distribution serving it.
    A distribution pinned to a version takes no pushes: DENIED.
    """
    repository, _ = await _push_target(txn, base_path, now)
    return repository


async def _push_target(
    txn: ITransaction, base_path: str, now: float
) -> tuple[Repository, int | None]:
    """`writable_repository`, and the repository's retain_versions."""
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
        repository = await _existing_repository(txn, view.repository.name, lock=True)
    rows = await txn.execute(
        "SELECT retain_versions FROM repositories WHERE id = ?", (repository.id,)
    )
    return repository, rows[0][0]


async def _writable_existing(txn: ITransaction, base_path: str) -> Repository:
    """The repository a delete through `base_path` changes, its row locked; NAME_UNKNOWN if none."""
    view = await find_view(txn, base_path)
    if view is None:
        raise RegistryError(NAME_UNKNOWN, f"repository {base_path!r} is not known",
                            {"name": base_path})
    _refuse_pinned(view, base_path)
    return await _existing_repository(txn, view.repository.name, lock=True)


def _refuse_pinned(view: View, base_path: str) -> None:
    if view.pinned is not None:
        raise RegistryError(
            DENIED,
            f"{base_path!r} serves version {view.pinned} of repository "
            f"{view.repository.name!r}, pinned: it takes no pushes or deletes; unpin the "
            "distribution or push to another name",
            {"name": base_path, "repository": view.repository.name, "version": view.pinned},
        )


async def check_writable(txn: ITransaction, base_path: str) -> None:
    """Refuse with DENIED, before any byte is sent, a push to a pinned distribution."""
    view = await find_view(txn, base_path)
    if view is not None:
        _refuse_pinned(view, base_path)


#: The SQL condition that distribution `d` shows the {kind} whose digest is
#: the column {digest}: an unpinned distribution shows the latest version and
#: the staging version, a pinned one its version alone (see `View`). Each
#: branch is an EXISTS of its own so that the latest version's can use the
#: index of current rows.
_SHOWN = (
    "(d.version IS NULL AND ("
    "EXISTS (SELECT 1 FROM repository_content c WHERE c.repository_id = d.repository_id "
    "AND c.kind = '{kind}' AND c.name = {digest} AND c.version_removed IS NULL) "
    "OR EXISTS (SELECT 1 FROM staged_content s WHERE s.repository_id = d.repository_id "
    "AND s.kind = '{kind}' AND s.digest = {digest})) "
    "OR d.version IS NOT NULL AND "
    "EXISTS (SELECT 1 FROM repository_content c WHERE c.repository_id = d.repository_id "
    "AND c.kind = '{kind}' AND c.name = {digest} AND c.version_added <= d.version "
    "AND (c.version_removed IS NULL OR c.version_removed > d.version)))"
)


def _in_view(view: View, alias: str = "") -> tuple[str, tuple]:
    """The SQL condition (and its parameters) selecting content rows `view` shows."""
    if view.pinned is None:
        return f" AND {alias}version_removed IS NULL", ()
    return (
        f" AND {alias}version_added <= ? AND ({alias}version_removed IS NULL "
        f"OR {alias}version_removed > ?)",
        (view.pinned, view.pinned),
    )


async def _current(
    txn: ITransaction, repository_id: int, kind: str, names: Iterable[str]
) -> set[str]:
    """Which of `names` (of `kind`) the latest version holds."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(names))):
        rows = await txn.execute(
            "SELECT name FROM repository_content WHERE repository_id = ? AND kind = ? "
            f"AND version_removed IS NULL AND name IN ({_marks(len(chunk))})",
            (repository_id, kind, *chunk),
        )
        found.update(r[0] for r in rows)
    return found


async def _staged(
    txn: ITransaction, repository_id: int, kind: str, digests: Iterable[str]
) -> set[str]:
    """Which of `digests` (of `kind`) the repository's staging version holds."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(digests))):
        rows = await txn.execute(
            "SELECT digest FROM staged_content WHERE repository_id = ? AND kind = ? "
            f"AND digest IN ({_marks(len(chunk))})",
            (repository_id, kind, *chunk),
        )
        found.update(r[0] for r in rows)
    return found


async def _unstage(
    txn: ITransaction, repository_id: int, kind: str, digests: Iterable[str]
) -> None:
    for chunk in _chunks(sorted(set(digests))):
        await txn.execute(
            "DELETE FROM staged_content WHERE repository_id = ? AND kind = ? "
            f"AND digest IN ({_marks(len(chunk))})",
            (repository_id, kind, *chunk),
        )


async def _unstage_held(
    txn: ITransaction, repository_id: int, held: frozenset[tuple[str, str]]
) -> None:
    """Take `held` ((kind, digest) pairs) out of the staging version; one statement if they fit."""
    parts = [
        (kind, chunk)
        for kind in ("manifest", "blob")
        for chunk in _chunks(sorted(d for k, d in held if k == kind))
    ]
    while parts:
        batch = [parts.pop(0)]
        while parts and sum(len(c) for _, c in batch) + len(parts[0][1]) <= _BATCH:
            batch.append(parts.pop(0))
        await txn.execute(
            "DELETE FROM staged_content WHERE "
            + " OR ".join(
                f"(repository_id = ? AND kind = ? AND digest IN ({_marks(len(chunk))}))"
                for _, chunk in batch
            ),
            tuple(v for kind, chunk in batch for v in (repository_id, kind, *chunk)),
        )


async def _stage(
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


# Blobs


_BLOB_SIZE = (
    "SELECT b.size FROM distributions d JOIN blobs b ON b.digest = ? "
    "WHERE d.base_path = ? AND " + _SHOWN.format(kind="blob", digest="b.digest")
)


async def blob_size(txn: ITransaction, name: str, digest: Digest) -> int | None:
    """The size of blob `digest` as repository `name` sees it; None when it does not see it.

    One statement (distribution, visibility and size together): on a
    networked database each statement is a round trip, and blob HEADs are
    among the hottest reads. An unknown blob is an answer, not an error: every
    push asks about each blob before uploading it, and an exception raised
    here would pass through every layer of the transaction machinery.
    """
    rows = await txn.execute(_BLOB_SIZE, (str(digest), name))
    return rows[0][0] if rows else None


async def stage_blob(
    txn: ITransaction, name: str, digest: Digest, size: int, now: float
) -> None:
    """Record blob `digest` and add it to the staging version of repository `name`."""
    await txn.execute(
        "INSERT INTO blobs (digest, size, created) VALUES (?, ?, ?) "
        "ON CONFLICT (digest) DO NOTHING",
        (str(digest), size, now),
    )
    repository = await writable_repository(txn, name, now)
    await _stage(txn, repository, "blob", str(digest), now)


async def mount_blob(
    txn: ITransaction, name: str, source: str, digest: Digest, now: float
) -> int | None:
    """Stage into `name` a blob that repository `source` holds; its size, or None if it cannot."""
    size = await blob_size(txn, source, digest)
    if size is None:
        return None
    repository = await writable_repository(txn, name, now)
    await _stage(txn, repository, "blob", str(digest), now)
    return size


async def delete_blob(txn: ITransaction, name: str, digest: Digest, now: float) -> None:
    """Take blob `digest` out of repository `name`: a new version without it, or out of staging.

    A blob that a manifest of the latest version needs is refused with a
    conflict: removing it would leave that manifest broken.
    """
    repository = await _writable_existing(txn, name)
    text = str(digest)
    in_staging = await _staged(txn, repository.id, "blob", [text])
    in_current = await _current(txn, repository.id, "blob", [text])
    if not in_staging and not in_current:
        raise RegistryError(BLOB_UNKNOWN, f"blob {digest} is not in repository {name!r}",
                            {"digest": text})
    if in_current:
        users = await _manifests_needing(txn, repository.id, "blob", text)
        if users:
            raise RegistryError(
                CONFLICT,
                f"blob {digest} is part of manifest {users[0]} in repository {name!r}: "
                "delete the manifest first",
                {"digest": text, "manifests": users[:10]},
            )
        version = await _new_version(txn, repository, f"delete blob {digest}", now)
        await _remove(txn, repository.id, version, "blob", [text])
    await _unstage(txn, repository.id, "blob", [text])


async def _manifests_needing(
    txn: ITransaction, repository_id: int, kind: str, digest: str, staged: bool = False
) -> list[str]:
    """Manifests of the latest version (and with `staged`, of staging) that reference `digest`."""
    if not staged:
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


# Manifests


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
    references = [("blob", str(d)) for d in manifest.blobs] + [
        ("manifest", str(d)) for d in manifest.manifests
    ]
    for i in range(0, len(references), _BATCH // 3):
        chunk = references[i : i + _BATCH // 3]
        await txn.execute(
            "INSERT INTO manifest_references (manifest, kind, digest) VALUES "
            + ", ".join(["(?, ?, ?)"] * len(chunk)),
            tuple(v for kind, digest in chunk for v in (str(manifest.digest), kind, digest)),
        )


async def stage_manifest(txn: ITransaction, name: str, manifest: Manifest, now: float) -> None:
    """Record `manifest` and add it to the staging version of repository `name`."""
    repository = await writable_repository(txn, name, now)
    await store_manifest(txn, manifest, now)
    await _stage(txn, repository, "manifest", str(manifest.digest), now)


_MANIFEST_BY_DIGEST = (
    "SELECT m.digest, m.media_type, m.body FROM distributions d "
    "JOIN manifests m ON m.digest = ? "
    "WHERE d.base_path = ? AND " + _SHOWN.format(kind="manifest", digest="m.digest")
)

#: Two branches rather than one condition on d.version, so that the unpinned
#: one (`version_removed IS NULL`) can use the index of current rows: a
#: repository may hold many tags and many versions. The manifest is joined
#: outside them so that each branch starts from the distribution, and the
#: branch that does not apply finds no distribution row and costs nothing.
_MANIFEST_BY_TAG = (
    "SELECT t.digest, m.media_type, m.body FROM ("
    "SELECT c.digest FROM distributions d "
    "JOIN repository_content c ON c.repository_id = d.repository_id AND c.kind = 'tag' "
    "AND c.name = ? AND c.version_removed IS NULL "
    "WHERE d.base_path = ? AND d.version IS NULL "
    "UNION ALL "
    "SELECT c.digest FROM distributions d "
    "JOIN repository_content c ON c.repository_id = d.repository_id AND c.kind = 'tag' "
    "AND c.name = ? AND c.version_added <= d.version "
    "AND (c.version_removed IS NULL OR c.version_removed > d.version) "
    "WHERE d.base_path = ? AND d.version IS NOT NULL"
    ") t JOIN manifests m ON m.digest = t.digest"
)


async def get_manifest(txn: ITransaction, name: str, reference: str) -> StoredManifest:
    """The manifest that `reference` (a tag or digest) names in repository `name`.

    MANIFEST_UNKNOWN when `name` serves no such manifest (no such
    distribution included). One statement either way: on a networked
    database each statement is a round trip, and manifest GETs are the
    hottest read of a pull.
    """
    if ":" in reference:
        rows = await txn.execute(_MANIFEST_BY_DIGEST, (reference, name))
    else:
        rows = await txn.execute(_MANIFEST_BY_TAG, (reference, name, reference, name))
    if not rows:
        raise RegistryError(
            MANIFEST_UNKNOWN,
            f"manifest {reference!r} is not in repository {name!r}",
            {"name": name, "reference": reference},
        )
    digest, media_type, body = rows[0]
    return StoredManifest(Digest.parse(digest), media_type, bytes(body))


@attrs.frozen
class _Closure:
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


async def _closure(
    txn: ITransaction, repository: Repository, manifest: Manifest, tag: str | None
) -> _Closure:
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
    manifests = {root}
    blobs = {str(d) for d in manifest.blobs}
    #: (digest, declared size, the manifest declaring it), checked once all sizes are known.
    declared = [(str(d), size, root) for d, size in manifest.sizes]
    stored_sizes: dict[str, int] = {}
    current: set[tuple[str, str]] = set()
    staged: set[tuple[str, str]] = set()
    frontier = {str(d) for d in manifest.manifests}
    while frontier:
        frontier -= manifests
        if not frontier:
            break
        present: set[str] = set()
        children: set[str] = set()
        for chunk in _chunks(sorted(frontier)):
            # The bodies rather than manifest_references: a child pushed by digest
            # was checked against nothing, and its descriptors' sizes are only there.
            rows = await txn.execute(
                f"SELECT m.digest, {_held('manifest', 'm.digest')}, m.media_type, m.body "
                f"FROM manifests m WHERE m.digest IN ({_marks(len(chunk))})",
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
                declared += [(str(d), size, digest) for d, size in child.sizes]
        if present != frontier:
            missing = sorted(frontier - present)
            raise RegistryError(
                MANIFEST_BLOB_UNKNOWN,
                f"manifest {missing[0]} is not in repository {repository.name!r}: push it first",
                {"manifests": missing[:20]},
            )
        manifests |= frontier
        frontier = children
    known: set[str] = set()
    stored = False
    tagged = None
    # The manifest itself and the tag ride along with the first (usually only) chunk.
    for i, chunk in enumerate(list(_chunks(sorted(blobs))) or [[]]):
        branches: list[str] = []
        params: list[object] = []
        if chunk:
            branches.append(
                f"SELECT 'blob', b.digest, {_held('blob', 'b.digest')}, b.size FROM blobs b "
                f"WHERE b.digest IN ({_marks(len(chunk))})"
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
        raise RegistryError(
            MANIFEST_BLOB_UNKNOWN,
            f"blob {missing[0]} is not in repository {repository.name!r}: push it again",
            {"blobs": missing[:20]},
        )
    for digest, size, parent in declared:
        if stored_sizes[digest] != size:
            raise RegistryError(
                SIZE_INVALID,
                f"manifest {parent} declares {digest} as {size} bytes, but it holds "
                f"{stored_sizes[digest]}",
                {"digest": digest, "manifest": parent, "declared": size,
                 "size": stored_sizes[digest]},
            )
    return _Closure(
        frozenset(manifests), frozenset(blobs), frozenset(current), frozenset(staged),
        stored, tagged,
    )


async def _new_version(txn: ITransaction, repository: Repository, reason: str, now: float) -> int:
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


async def _add(
    txn: ITransaction, repository_id: int, version: int, rows: list[tuple[str, str, str]]
) -> None:
    """Add content `rows` (kind, name, digest) to `version`: every kind in one statement."""
    step = _BATCH // 5
    for i in range(0, len(rows), step):
        chunk = rows[i : i + step]
        await txn.execute(
            "INSERT INTO repository_content (repository_id, kind, name, digest, version_added) "
            "VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk)),
            tuple(
                v
                for kind, name, digest in chunk
                for v in (repository_id, kind, name, digest, version)
            ),
        )


async def _remove(
    txn: ITransaction, repository_id: int, version: int, kind: str, names: Iterable[str]
) -> None:
    for chunk in _chunks(sorted(set(names))):
        await txn.execute(
            "UPDATE repository_content SET version_removed = ? WHERE repository_id = ? "
            f"AND kind = ? AND version_removed IS NULL AND name IN ({_marks(len(chunk))})",
            (version, repository_id, kind, *chunk),
        )


async def promote(
    txn: ITransaction,
    blob_store: IBlobStore,
    name: str,
    manifest: Manifest,
    tag: str | None,
    now: float,
) -> Promotion:
    """Make `manifest`, its whole closure and `tag` (if any) part of a new version.

    Under the repository's lock: checks that every child manifest and blob is
    in the latest or the staging version and that every blob's bytes are
    stored, then creates one version that adds what the latest lacks and moves
    the tag, and takes the closure out of staging. When nothing would change,
    no version is made.
    """
    repository, keep = await _push_target(txn, name, now)
    promotion = await promote_into(txn, blob_store, repository, manifest, tag, now)
    return attrs.evolve(promotion, retain_versions=keep)


async def promote_into(
    txn: ITransaction,
    blob_store: IBlobStore,
    repository: Repository,
    manifest: Manifest,
    tag: str | None,
    now: float,
    reason: str | None = None,
) -> Promotion:
    """`promote` into `repository`, whose row the caller has locked."""
    closure = await _closure(txn, repository, manifest, tag)
    if not closure.stored:
        await store_manifest(txn, manifest, now)
    missing = await blob_store.missing_blobs([Digest.parse(b) for b in sorted(closure.blobs)])
    if missing:
        raise BlobBytesMissing(missing)
    digest = str(manifest.digest)
    moves_tag = tag is not None and closure.tagged != digest
    # Read under the lock, which every staging takes too: nothing else is staged meanwhile.
    if closure.staged:
        await _unstage_held(txn, repository.id, closure.staged)
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
    version = await _new_version(txn, repository, reason, now)
    if moves_tag:
        assert tag is not None
        if closure.tagged is not None:
            await _remove(txn, repository.id, version, "tag", [tag])
        added.insert(0, ("tag", tag, digest))
    await _add(txn, repository.id, version, added)
    return Promotion(version, created=True)


async def delete_tag(txn: ITransaction, name: str, tag: str, now: float) -> int:
    """A new version of `name` without `tag`; its number."""
    repository = await _writable_existing(txn, name)
    if not await _current(txn, repository.id, "tag", [tag]):
        raise RegistryError(MANIFEST_UNKNOWN, f"tag {tag!r} is not in repository {name!r}",
                            {"tag": tag})
    version = await _new_version(txn, repository, f"delete tag {tag}", now)
    await _remove(txn, repository.id, version, "tag", [tag])
    return version


async def delete_manifest(txn: ITransaction, name: str, digest: str, now: float) -> int | None:
    """Take manifest `digest` out of `name`, with the tags that point at it.

    The blobs it needed that no other manifest of the version needs go with
    it; child manifests stay, as manifests of their own. Returns the new
    version, or None when the manifest was only staged.
    """
    repository = await _writable_existing(txn, name)
    in_staging = await _staged(txn, repository.id, "manifest", [digest])
    in_current = await _current(txn, repository.id, "manifest", [digest])
    if not in_staging and not in_current:
        raise RegistryError(MANIFEST_UNKNOWN, f"manifest {digest} is not in repository {name!r}",
                            {"digest": digest})
    # A child that an index still needs stays: the index would point at nothing,
    # in a version (unpullable) or in staging (dropped instead of promoted).
    parents = await _manifests_needing(txn, repository.id, "manifest", digest, staged=True)
    if parents:
        raise RegistryError(
            CONFLICT,
            f"manifest {digest} is part of index {parents[0]} in repository {name!r}: "
            "delete the index first",
            {"digest": digest, "manifests": parents[:10]},
        )
    await _unstage(txn, repository.id, "manifest", [digest])
    if not in_current:
        return None
    tags = await txn.execute(
        "SELECT name FROM repository_content WHERE repository_id = ? AND kind = 'tag' "
        "AND digest = ? AND version_removed IS NULL",
        (repository.id, digest),
    )
    version = await _new_version(txn, repository, f"delete manifest {digest}", now)
    await _remove(txn, repository.id, version, "manifest", [digest])
    await _remove(txn, repository.id, version, "tag", [t[0] for t in tags])
    needed = await txn.execute(
        "SELECT digest FROM manifest_references WHERE manifest = ? AND kind = 'blob'", (digest,)
    )
    orphans = [
        d for (d,) in needed if not await _manifests_needing(txn, repository.id, "blob", d)
    ]
    await _remove(txn, repository.id, version, "blob", orphans)
    return version


# Listings


async def tags(
    txn: ITransaction, name: str, limit: int | None, last: str | None
) -> list[str]:
    """The tags `name` serves (see `View`), in lexical order, after `last`."""
    view = await find_view(txn, name)
    if view is None:
        raise RegistryError(NAME_UNKNOWN, f"repository {name!r} is not known", {"name": name})
    condition, params = _in_view(view)
    sql = "SELECT name FROM repository_content WHERE repository_id = ? AND kind = 'tag'" + condition
    params = (view.repository.id, *params)
    if last is not None:
        sql += " AND name > ?"
        params += (last,)
    sql += " ORDER BY name"
    if limit is not None:
        sql += " LIMIT ?"
        params += (limit,)
    return [r[0] for r in await txn.execute(sql, params)]


async def repositories(txn: ITransaction, limit: int | None, last: str | None) -> list[str]:
    """The names the registry API serves (distributions' base paths), in order, after `last`."""
    sql = "SELECT base_path FROM distributions"
    params: tuple = ()
    if last is not None:
        sql += " WHERE base_path > ?"
        params += (last,)
    sql += " ORDER BY base_path"
    if limit is not None:
        sql += " LIMIT ?"
        params += (limit,)
    return [r[0] for r in await txn.execute(sql, params)]


async def referrers(
    txn: ITransaction, name: str, subject: Digest, artifact_type: str | None
) -> list[Descriptor]:
    """Descriptors of the manifests in `name` whose subject is `subject`."""
    view = await find_view(txn, name)
    if view is None:
        return []
    condition, params = _in_view(view, "c.")
    sql = (
        "SELECT m.digest, m.media_type, m.artifact_type, m.annotations, length(m.body) "
        "FROM manifests m JOIN repository_content c ON c.repository_id = ? "
        "AND c.kind = 'manifest' AND c.name = m.digest" + condition + " "
        "WHERE m.subject = ?"
    )
    params = (view.repository.id, *params, str(subject))
    if artifact_type is not None:
        sql += " AND m.artifact_type = ?"
        params += (artifact_type,)
    rows = await txn.execute(sql + " ORDER BY m.digest", params)
    return [
        Descriptor(media_type, Digest.parse(digest), size, artifact,
                   json.loads(annotations) if annotations else None)
        for digest, media_type, artifact, annotations, size in rows
    ]


async def versions(txn: ITransaction, name: str) -> list[Version]:
    """Every version of repository `name`, oldest first."""
    repository = await _existing_repository(txn, name)
    rows = await txn.execute(
        "SELECT number, base_version, reason, created FROM repository_versions "
        "WHERE repository_id = ? ORDER BY number",
        (repository.id,),
    )
    return [Version(*row) for row in rows]


async def version_content(
    txn: ITransaction, name: str, number: int | None = None
) -> dict[str, dict[str, str]]:
    """What version `number` (default: the latest) of `name` holds, by kind: name -> digest."""
    repository = await _existing_repository(txn, name)
    if number is None:
        number = repository.latest_version
    rows = await txn.execute(
        "SELECT kind, name, digest FROM repository_content WHERE repository_id = ? "
        "AND version_added <= ? AND (version_removed IS NULL OR version_removed > ?)",
        (repository.id, number, number),
    )
    content: dict[str, dict[str, str]] = {"tag": {}, "manifest": {}, "blob": {}}
    for kind, key, digest in rows:
        content[kind][key] = digest
    return content
