"""Whether the metadata store answers: the readiness probe's one statement."""

from __future__ import annotations

from ocireg.interfaces import IMetadataStore


async def answers(store: IMetadataStore) -> None:
    """Run a trivial transaction on `store`; fails as the store fails."""
    await store.transact(lambda txn: txn.execute("SELECT 1"))
