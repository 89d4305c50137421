"""Upload sessions: who an upload belongs to, as the metadata store keeps it.

An upload's bytes are its file in the blob store; the row says which
repository it is for and when it was last written to (for purging).
"""

from __future__ import annotations

import attrs

from ocireg.errors import BLOB_UPLOAD_UNKNOWN, RegistryError
from ocireg.interfaces import ITransaction


@attrs.frozen
class Upload:
    uuid: str
    repository: str
    created: float
    updated: float


async def create_upload(
    txn: ITransaction, uuid: str, repository: str, now: float
) -> Upload | None:
    """Record upload `uuid` of `repository`; None, recording nothing, when a pinned
    distribution serves that name (it takes no pushes: see `versions.check_writable`).

    One statement: on a networked database each is a round trip.
    """
    rows = await txn.execute(
        "INSERT INTO uploads (uuid, repository, created, updated) SELECT ?, ?, ?, ? "
        "WHERE NOT EXISTS (SELECT 1 FROM distributions WHERE base_path = ? "
        "AND version IS NOT NULL) RETURNING uuid",
        (uuid, repository, now, now, repository),
    )
    return Upload(uuid, repository, now, now) if rows else None


async def find_upload(txn: ITransaction, repository: str, uuid: str) -> Upload:
    """The upload `uuid` of `repository`, or BLOB_UPLOAD_UNKNOWN.

    An upload of another repository is unknown here: its uuid is no key to it.
    """
    rows = await txn.execute(
        "SELECT uuid, repository, created, updated FROM uploads WHERE uuid = ?", (uuid,)
    )
    if not rows or rows[0][1] != repository:
        raise RegistryError(
            BLOB_UPLOAD_UNKNOWN,
            f"upload {uuid!r} is not in progress in repository {repository!r}",
            {"uuid": uuid},
        )
    return Upload(*rows[0])


async def upload_exists(txn: ITransaction, uuid: str) -> bool:
    return bool(await txn.execute("SELECT 1 FROM uploads WHERE uuid = ?", (uuid,)))


async def touch_upload(txn: ITransaction, uuid: str, now: float) -> None:
    await txn.execute("UPDATE uploads SET updated = ? WHERE uuid = ?", (now, uuid))


async def delete_upload(txn: ITransaction, uuid: str) -> None:
    await txn.execute("DELETE FROM uploads WHERE uuid = ?", (uuid,))
