"""What a pull reads: a blob's size and a manifest by reference, as a name shows them.

One statement each: on a networked database each statement is a round trip,
and these are the hottest reads of a pull (and of every push's HEADs).
"""

from __future__ import annotations

import attrs

from ocireg.digest import Digest
from ocireg.domain.errors import ManifestUnknown
from ocireg.interfaces import ITransaction


@attrs.frozen
class StoredManifest:
    digest: Digest
    media_type: str
    body: bytes = attrs.field(repr=False)


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
        raise ManifestUnknown(name, reference)
    digest, media_type, body = rows[0]
    return StoredManifest(Digest.parse(digest), media_type, bytes(body))


