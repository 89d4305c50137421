"""A repository's staging version, as a user sees it: what it holds, and discarding it.

Functions of one transaction (`txn`, an `ITransaction`), like `versions`.
Discarding takes content out of staging only: the blobs and manifests stay
in the global content for garbage collection to judge, and uploads still in
progress are left to finish or expire.
"""

from __future__ import annotations

import attrs

from ocireg.interfaces import ITransaction
from ocireg.versions import _existing_repository


@attrs.frozen
class StagedItem:
    kind: str
    digest: str
    created: float


@attrs.frozen
class OpenUpload:
    uuid: str
    base_path: str
    created: float
    updated: float


@attrs.frozen
class Staging:
    repository: str
    items: tuple[StagedItem, ...]
    #: Upload sessions in progress through a base path serving the repository.
    uploads: tuple[OpenUpload, ...]
    #: When the oldest staged item was staged, or None when staging is empty.
    oldest: float | None


async def show(txn: ITransaction, name: str) -> Staging:
    repository = await _existing_repository(txn, name)
    rows = await txn.execute(
        "SELECT kind, digest, created FROM staged_content WHERE repository_id = ? "
        "ORDER BY created, kind, digest",
        (repository.id,),
    )
    items = tuple(StagedItem(*row) for row in rows)
    # Uploads are recorded under the name the client pushed to: the
    # repository's own name or the base path of one of its distributions.
    uploads = await txn.execute(
        "SELECT uuid, repository, created, updated FROM uploads WHERE repository = ? "
        "OR repository IN (SELECT base_path FROM distributions WHERE repository_id = ?) "
        "ORDER BY created, uuid",
        (repository.name, repository.id),
    )
    return Staging(
        repository.name,
        items,
        tuple(OpenUpload(*row) for row in uploads),
        min((i.created for i in items), default=None),
    )


async def discard(txn: ITransaction, name: str) -> int:
    """Empty the staging version of `name`; how many items it held."""
    repository = await _existing_repository(txn, name, lock=True)
    rows = await txn.execute(
        "DELETE FROM staged_content WHERE repository_id = ? RETURNING digest", (repository.id,)
    )
    return len(rows)
