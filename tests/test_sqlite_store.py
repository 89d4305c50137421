"""The SQLite store: a transaction per thread hop, group commit, rollbacks kept.

What every metadata store does is in tests/test_interface_metadata_store.py.
"""

from __future__ import annotations

import threading

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from ocireg.db.sqlite import SQLiteMetadataStore


@pytest_twisted.async_yield_fixture
async def store(tmp_path):
    opened = await SQLiteMetadataStore.open(str(tmp_path / "metadata.sqlite3"), reactor)
    changes: list[int] = []
    opened.on_change(lambda: changes.append(1))
    opened.changes = changes
    try:
        yield opened
    finally:
        await opened.close()


async def _count(store) -> int:
    rows = await store.transact(lambda txn: txn.execute("SELECT count(*) FROM blobs"))
    return rows[0][0]


@pytest_twisted.ensureDeferred
async def test_an_interaction_runs_whole_on_the_database_thread(store):
    threads = set()

    async def interaction(txn):
        threads.add(threading.get_ident())
        await txn.execute("SELECT 1")
        threads.add(threading.get_ident())
        await txn.execute("SELECT 2")
        threads.add(threading.get_ident())

    await store.transact(interaction)
    assert len(threads) == 1 and threading.get_ident() not in threads


@pytest_twisted.ensureDeferred
async def test_an_interaction_may_await_work_of_the_reactor_between_statements(store):
    async def interaction(txn):
        await txn.execute("INSERT INTO blobs (digest, size, created) VALUES ('a', 1, 0)")
        # As a tag write awaits the blob store's stat of the closure's files.
        waited = await deferLater(reactor, 0.01, lambda: "done")
        await txn.execute("INSERT INTO blobs (digest, size, created) VALUES ('b', 1, 0)")
        return waited

    assert await store.transact(interaction) == "done"
    assert await _count(store) == 2


@pytest_twisted.ensureDeferred
async def test_an_error_awaited_from_the_reactor_rolls_the_transaction_back(store):
    def boom():
        raise ValueError("the blob store failed")

    async def interaction(txn):
        await txn.execute("INSERT INTO blobs (digest, size, created) VALUES ('a', 1, 0)")
        await deferLater(reactor, 0, boom)

    with pytest.raises(ValueError, match="blob store failed"):
        await store.transact(interaction)
    assert await _count(store) == 0


@pytest_twisted.ensureDeferred
async def test_transactions_handed_over_before_close_finish(store):
    pending = [store.transact(lambda txn: txn.execute("SELECT 1")) for _ in range(20)]
    await store.close()
    for d in pending:
        assert await d == [(1,)]


@pytest_twisted.ensureDeferred
async def test_concurrent_transactions_commit_together_and_a_failing_one_takes_back_only_its_own(
    store,
):
    def insert(digest: str, fail: bool = False):
        async def interaction(txn):
            await txn.execute(
                "INSERT INTO blobs (digest, size, created) VALUES (?, 1, 0)", (digest,)
            )
            if fail:
                raise ValueError(f"{digest} fails")
            return digest

        return interaction

    asked = [store.transact(insert(f"d{i}", fail=i == 3)) for i in range(8)]
    outcomes = []
    for d in asked:
        try:
            outcomes.append(await d)
        except ValueError as e:
            outcomes.append(str(e))
    assert outcomes == ["d0", "d1", "d2", "d3 fails", "d4", "d5", "d6", "d7"]
    rows = await store.transact(lambda txn: txn.execute("SELECT digest FROM blobs ORDER BY 1"))
    assert [r[0] for r in rows] == ["d0", "d1", "d2", "d4", "d5", "d6", "d7"]
    # Committed together in at most a few groups, each reported as one change.
    assert 1 <= len(store.changes) < 8

