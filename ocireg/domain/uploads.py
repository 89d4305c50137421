"""Upload sessions: who an upload belongs to, as the metadata store keeps it.

An upload's bytes are its file in the blob store; the row says which
repository it is for, who opened it (to cap the sessions one client keeps
open), and when it was last written to (for purging).
"""

from __future__ import annotations

import ipaddress

import attrs

from ocireg.domain.errors import UploadUnknown
from ocireg.interfaces import ITransaction


@attrs.frozen
class Upload:
    uuid: str
    repository: str
    created: float
    updated: float


def client_key(user: str | None, address: str) -> str:
    """Whose upload sessions these are, to count them: a user's, else an address's.

    Anonymous IPv6 clients count by their /64, the block one host is given:
    otherwise one machine could hold as many addresses as it likes.
    """
    if user is not None:
        return f"user:{user}"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"address:{address}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"address:{ip.ipv4_mapped}"
        return f"address:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"address:{ip}"


async def create_upload(
    txn: ITransaction,
    uuid: str,
    repository: str,
    now: float,
    owner: str | None = None,
    limit: int | None = None,
) -> Upload | None:
    """Record upload `uuid` of `repository`, opened by `owner`; None, recording nothing,
    when a pinned distribution serves that name (it takes no pushes: see
    `repositories.check_writable`), or when `owner` already has `limit` uploads open.

    One statement: on a networked database each is a round trip. Where
    transactions run side by side (PostgreSQL), each counts without seeing
    the others' uncommitted rows: an owner can pass `limit` by at most the
    number of transactions running at once.
    """
    capped = owner is not None and limit is not None
    rows = await txn.execute(
        "INSERT INTO uploads (uuid, repository, created, updated, owner) SELECT ?, ?, ?, ?, ? "
        "WHERE NOT EXISTS (SELECT 1 FROM distributions WHERE base_path = ? "
        "AND version IS NOT NULL)"
        + (" AND (SELECT count(*) FROM uploads WHERE owner = ?) < ?" if capped else "")
        + " RETURNING uuid",
        (uuid, repository, now, now, owner, repository) + ((owner, limit) if capped else ()),
    )
    return Upload(uuid, repository, now, now) if rows else None


async def open_uploads(txn: ITransaction, owner: str) -> int:
    """How many upload sessions `owner` has open."""
    rows = await txn.execute("SELECT count(*) FROM uploads WHERE owner = ?", (owner,))
    return rows[0][0]


async def find_upload(txn: ITransaction, repository: str, uuid: str) -> Upload:
    """The upload `uuid` of `repository`, or BLOB_UPLOAD_UNKNOWN.

    An upload of another repository is unknown here: its uuid is no key to it.
    """
    rows = await txn.execute(
        "SELECT uuid, repository, created, updated FROM uploads WHERE uuid = ?", (uuid,)
    )
    if not rows or rows[0][1] != repository:
        raise UploadUnknown(uuid, repository)
    return Upload(*rows[0])


async def upload_exists(txn: ITransaction, uuid: str) -> bool:
    return bool(await txn.execute("SELECT 1 FROM uploads WHERE uuid = ?", (uuid,)))


async def touch_upload(txn: ITransaction, uuid: str, now: float) -> None:
    await txn.execute("UPDATE uploads SET updated = ? WHERE uuid = ?", (now, uuid))


async def delete_upload(txn: ITransaction, uuid: str) -> None:
    await txn.execute("DELETE FROM uploads WHERE uuid = ?", (uuid,))
