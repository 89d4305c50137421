"""Distributions: the base paths the registry API serves, and what each serves.

A distribution serves a repository's latest version (and its staging, so a
push in flight can read back what it uploaded), or a version pinned to it.
`repositories.find_view` is how the registry API reads them; this module is
how they are managed.
"""

from __future__ import annotations

import attrs

from ocireg.domain.content import version_exists
from ocireg.domain.errors import DistributionExists, DistributionUnknown
from ocireg.domain.repositories import existing_repository
from ocireg.interfaces import ITransaction


@attrs.frozen
class Distribution:
    base_path: str
    repository: str
    #: The pinned version, or None to serve the latest.
    version: int | None
    created: float
    #: The version a pull serves right now.
    serves: int


_SELECT = (
    "SELECT d.base_path, r.name, d.version, d.created, coalesce(d.version, r.latest_version) "
    "FROM distributions d JOIN repositories r ON r.id = d.repository_id"
)


async def find(txn: ITransaction, base_path: str) -> Distribution:
    rows = await txn.execute(_SELECT + " WHERE d.base_path = ?", (base_path,))
    if not rows:
        raise DistributionUnknown(base_path)
    return Distribution(*rows[0])


async def listing(
    txn: ITransaction, repository: str | None, limit: int, after: str | None
) -> list[Distribution]:
    """Distributions by base path, after `after`; only `repository`'s when given."""
    sql = _SELECT + " WHERE 1 = 1"
    params: tuple = ()
    if repository is not None:
        await existing_repository(txn, repository)
        sql += " AND r.name = ?"
        params += (repository,)
    if after is not None:
        sql += " AND d.base_path > ?"
        params += (after,)
    rows = await txn.execute(sql + " ORDER BY d.base_path LIMIT ?", (*params, limit))
    return [Distribution(*row) for row in rows]


async def create(
    txn: ITransaction, base_path: str, repository: str, version: int | None, now: float
) -> Distribution:
    """A new distribution `base_path` serving `repository` (pinned to `version` if given)."""
    target = await existing_repository(txn, repository, lock=True)
    if version is not None:
        await version_exists(txn, target, version)
    rows = await txn.execute(
        "INSERT INTO distributions (base_path, repository_id, version, created) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (base_path) DO NOTHING RETURNING base_path",
        (base_path, target.id, version, now),
    )
    if not rows:
        raise DistributionExists(base_path)
    return await find(txn, base_path)


async def update(
    txn: ITransaction, base_path: str, repository: str | None, version: int | None, pin: bool
) -> Distribution:
    """Point `base_path` at `repository` (if given); with `pin`, at `version` (None: latest).

    Without `pin` the distribution keeps its pinned version, which must then
    exist in the repository it is moved to.
    """
    current = await find(txn, base_path)
    target = await existing_repository(txn, repository or current.repository, lock=True)
    if not pin:
        version = current.version
    if version is not None:
        await version_exists(txn, target, version)
    await txn.execute(
        "UPDATE distributions SET repository_id = ?, version = ? WHERE base_path = ?",
        (target.id, version, base_path),
    )
    return await find(txn, base_path)


async def delete(txn: ITransaction, base_path: str) -> None:
    await find(txn, base_path)
    await txn.execute("DELETE FROM distributions WHERE base_path = ?", (base_path,))
