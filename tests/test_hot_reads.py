"""The hot reads (manifest GET, blob HEAD) cost one statement and no transaction overhead.

On PostgreSQL every statement, BEGIN and COMMIT is a network round trip;
these tests pin down the count, so that a change to the domain's reads shows
up here and not only in the benchmark.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest_twisted
from twisted.internet.defer import Deferred

from ocireg.db.pgstatements import run_transaction
from ocireg.domain.registry_operations import RegistryOperations
from ocireg.interfaces import IMetadataStore, ITransaction
from tests.domain_helpers import local_registry, push_blob, push_image


class _Counting:
    """`store`, recording each transaction's statements and whether it was read-only."""

    def __init__(self, store: IMetadataStore) -> None:
        self._store = store
        self.transactions: list[tuple[bool, list[str]]] = []

    def transact(
        self, interaction: Callable[[ITransaction], Awaitable[object]], readonly: bool = False
    ) -> Deferred:
        statements: list[str] = []
        self.transactions.append((readonly, statements))

        class Txn:
            def __init__(self, txn: ITransaction) -> None:
                self.for_update = txn.for_update
                self._txn = txn

            def execute(self, sql: str, params: tuple = ()) -> object:
                statements.append(sql)
                return self._txn.execute(sql, params)

        return self._store.transact(lambda txn: interaction(Txn(txn)), readonly=readonly)

    def close(self) -> object:
        return self._store.close()


@pytest_twisted.ensureDeferred
async def test_manifest_get_and_blob_head_are_one_read_only_statement_each(tmp_path):
    async with local_registry(tmp_path) as registry:
        digest, blobs = await push_image(registry, "app", "v1")
        staged = await push_blob(registry, "app")
        counting = _Counting(registry.metadata)
        reader = RegistryOperations(counting, registry.blobs, registry.clock)

        assert (await reader.get_manifest("app", "v1")).digest == digest
        assert (await reader.get_manifest("app", str(digest))).digest == digest
        assert (await reader.blob_size("app", str(blobs[0])))[1] == 4096
        assert (await reader.blob_size("app", str(staged)))[1] == 4096

        assert [(readonly, len(sql)) for readonly, sql in counting.transactions] == [
            (True, 1)
        ] * 4


class _Statements:
    """A stand-in for the PostgreSQL store's statement runner: records what it is asked to run."""

    description = None

    def __init__(self) -> None:
        self.sent: list[str] = []

    def execute(self, query: str, params: tuple = ()) -> Deferred:
        self.sent.append(query)
        d: Deferred = Deferred()
        d.callback(self)
        return d


@pytest_twisted.ensureDeferred
async def test_postgresql_read_only_interaction_sends_neither_begin_nor_commit():
    async def read(txn: ITransaction) -> None:
        await txn.execute("SELECT 1")

    plain, readonly = _Statements(), _Statements()
    await run_transaction(plain, read)  # type: ignore[arg-type]
    await run_transaction(readonly, read, readonly=True)  # type: ignore[arg-type]
    assert plain.sent == ["BEGIN; SELECT 1", "COMMIT"]
    assert readonly.sent == ["SELECT 1"]
