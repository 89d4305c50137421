"""Listings of the registry API: a name's tags, the catalog, a subject's referrers."""

from __future__ import annotations

import json

from ocireg.digest import Digest
from ocireg.domain.errors import NameUnknown
from ocireg.domain.repositories import View, find_view
from ocireg.interfaces import ITransaction
from ocireg.manifest import Descriptor


def _in_view(view: View, alias: str = "") -> tuple[str, tuple]:
    """The SQL condition (and its parameters) selecting content rows `view` shows."""
    if view.pinned is None:
        return f" AND {alias}version_removed IS NULL", ()
    return (
        f" AND {alias}version_added <= ? AND ({alias}version_removed IS NULL "
        f"OR {alias}version_removed > ?)",
        (view.pinned, view.pinned),
    )


async def tags(
    txn: ITransaction, name: str, limit: int | None, last: str | None
) -> list[str]:
    """The tags `name` serves (see `View`), in lexical order, after `last`."""
    view = await find_view(txn, name)
    if view is None:
        raise NameUnknown(name)
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


async def catalog(txn: ITransaction, limit: int | None, last: str | None) -> list[str]:
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


