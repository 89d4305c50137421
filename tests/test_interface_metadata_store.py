"""One behaviour suite for `IMetadataStore`, run against every implementation.

The SQLite store (on a file, and on `:memory:` as `ocireg.testing` opens it)
and the PostgreSQL store must behave alike wherever the domain can tell: what
commits, what rolls back, what is reported as a change, what a closed store
does. The metrics wrapper, which stands in front of either in the service,
is held to the same interface.
"""

from __future__ import annotations

import inspect

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool
from zope.interface.verify import verifyObject

from ocireg.db.postgresql import PostgreSQLMetadataStore
from ocireg.db.sqlite import SQLiteMetadataStore
from ocireg.digest import Digest
from ocireg.interfaces import IMetadataStore, ITransaction
from ocireg.metrics import MeasuredMetadataStore, RegistryMetrics
from ocireg.storage.filesystem import FilesystemBlobStore
from ocireg.testing import MemoryBlobStore, memory_metadata_store
from tests.databases import backends

_KINDS = [*backends(), "sqlite-memory"] if "sqlite" in backends() else backends()


@pytest_twisted.async_yield_fixture(params=_KINDS)
async def store(request, tmp_path):
    if request.param == "sqlite":
        opened = await SQLiteMetadataStore.open(str(tmp_path / "metadata.sqlite3"), reactor)
    elif request.param == "sqlite-memory":
        opened = await memory_metadata_store(reactor)
    else:
        # conftest's `pg`: a database of the test's own, dropped after it.
        opened = await PostgreSQLMetadataStore.open(request.getfixturevalue("pg").dsn, reactor)
    changes: list[int] = []
    opened.on_change(lambda: changes.append(1))
    opened.changes = changes
    try:
        yield opened
    finally:
        await opened.close()


def _insert(digest: str) -> str:
    return f"INSERT INTO blobs (digest, size, created) VALUES ('{digest}', 1, 0)"


async def _count(store) -> int:
    rows = await store.transact(lambda txn: txn.execute("SELECT count(*) FROM blobs"))
    return rows[0][0]


def test_it_provides_the_interface(store):
    assert verifyObject(IMetadataStore, store)


def _parameters(method) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values()]


@pytest.mark.parametrize("other", [PostgreSQLMetadataStore, MeasuredMetadataStore])
def test_every_implementation_takes_the_same_arguments(other):
    for name in IMetadataStore.names():
        assert _parameters(getattr(other, name)) == _parameters(
            getattr(SQLiteMetadataStore, name)
        ), name


@pytest_twisted.ensureDeferred
async def test_an_interaction_is_given_a_transaction(store):
    given = []

    async def interaction(txn):
        given.append(verifyObject(ITransaction, txn))
        assert isinstance(txn.for_update, str)

    await store.transact(interaction)
    await store.transact(interaction, readonly=True)
    assert given == [True, True]


@pytest_twisted.ensureDeferred
async def test_a_transaction_commits_and_answers_what_its_interaction_returned(store):
    async def write(txn):
        assert await txn.execute(_insert("a")) == []
        await txn.execute(
            "INSERT INTO blobs (digest, size, created) VALUES (?, ?, ?)", ("b", 2, 0)
        )
        return "written"

    assert await store.transact(write) == "written"
    rows = await store.transact(
        lambda txn: txn.execute("SELECT digest, size FROM blobs ORDER BY digest"), readonly=True
    )
    assert rows == [("a", 1), ("b", 2)]


@pytest_twisted.ensureDeferred
async def test_placeholders_take_parameters_and_a_literal_percent_stays_one(store):
    await store.transact(lambda txn: txn.execute(_insert("50%")))
    rows = await store.transact(
        lambda txn: txn.execute(
            "SELECT digest FROM blobs WHERE digest LIKE '5%' AND size = ?", (1,)
        ),
        readonly=True,
    )
    assert rows == [("50%",)]


@pytest_twisted.ensureDeferred
async def test_a_select_for_update_runs_with_the_transactions_clause(store):
    await store.transact(lambda txn: txn.execute(_insert("a")))

    async def lock(txn):
        return await txn.execute("SELECT digest FROM blobs WHERE digest = ?" + txn.for_update,
                                 ("a",))

    assert await store.transact(lock) == [("a",)]


@pytest_twisted.ensureDeferred
async def test_a_transaction_that_writes_reports_one_change_and_a_read_none(store):
    async def write(txn):
        await txn.execute(_insert("a"))
        await txn.execute(_insert("b"))

    await store.transact(write)
    # Reported before the transaction's caller resumes.
    assert store.changes == [1]
    assert await _count(store) == 2
    await store.transact(lambda txn: txn.execute("SELECT count(*) FROM blobs"), readonly=True)
    assert store.changes == [1]


@pytest_twisted.ensureDeferred
async def test_a_failed_transaction_rolls_back_and_reports_no_change(store):
    async def write_then_fail(txn):
        await txn.execute(_insert("a"))
        await txn.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(Exception, match="no_such_table"):
        await store.transact(write_then_fail)
    assert await _count(store) == 0
    assert store.changes == []


@pytest_twisted.ensureDeferred
async def test_an_interaction_that_raises_rolls_back_with_its_own_error(store):
    class Refused(Exception):
        pass

    async def write_then_refuse(txn):
        await txn.execute(_insert("a"))
        raise Refused("the domain said no")

    with pytest.raises(Refused, match="the domain said no"):
        await store.transact(write_then_refuse)
    assert await _count(store) == 0
    assert store.changes == []
    # The store goes on.
    await store.transact(lambda txn: txn.execute(_insert("b")))
    assert await _count(store) == 1


@pytest.mark.parametrize("blob_store", ["filesystem", "memory"])
@pytest_twisted.ensureDeferred
async def test_an_interaction_may_await_the_blob_stores_missing_blobs(store, blob_store, tmp_path):
    # ITransaction's rule: the one thing besides its own statements it may await.
    pool = ThreadPool(1, 2, name="test-blobs")
    pool.start()
    try:
        if blob_store == "filesystem":
            blobs = FilesystemBlobStore(str(tmp_path / "blobs"), reactor, pool)
        else:
            blobs = MemoryBlobStore(Clock())
        absent = Digest.of(b"absent")

        async def check_then_write(txn):
            await txn.execute(_insert("before"))
            missing = await blobs.missing_blobs([absent])
            await txn.execute(_insert("after"))
            return missing

        assert await store.transact(check_then_write) == [absent]
        assert await _count(store) == 2
    finally:
        pool.stop()


@pytest_twisted.ensureDeferred
async def test_an_open_store_has_heard_every_change_and_never_loses_listening(store):
    lost = []
    store.on_listening_lost(lambda: lost.append(1))
    assert store.catch_up() is True
    await store.transact(lambda txn: txn.execute(_insert("a")))
    assert store.catch_up() is True
    assert lost == []


@pytest_twisted.ensureDeferred
async def test_a_transaction_asked_for_after_close_fails(store):
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.transact(lambda txn: txn.execute("SELECT 1"))
    # A closed store can no longer tell whether answers read before are current.
    assert store.catch_up() is False
    await store.close()


@pytest_twisted.ensureDeferred
async def test_the_metrics_wrapper_passes_the_whole_interface_through(store):
    measured = MeasuredMetadataStore(
        store, RegistryMetrics(CollectorRegistry(), ()), reactor
    )
    assert verifyObject(IMetadataStore, measured)
    wrapped_changes = []
    measured.on_change(lambda: wrapped_changes.append(1))
    measured.on_listening_lost(lambda: None)
    assert await measured.transact(lambda txn: txn.execute(_insert("a"))) == []
    assert wrapped_changes == [1]
    assert measured.catch_up() is True
    await measured.close()
    assert measured.catch_up() is False
