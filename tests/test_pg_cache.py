"""The read cache on PostgreSQL: several processes, one database, no stale answers kept.

Two `RegistryService`s in the test's reactor on one database stand for two
processes (each has its own store, pool, listening connection and cache);
some tests run real ocireg processes. While the database cannot be reached,
answers kept from before are served stale, within a bound. Every wait is
bounded.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher

from ocireg.config import Config
from ocireg.db.pgchanges import CHANNEL
from ocireg.db.postgresql import PostgreSQLMetadataStore
from ocireg.service import RegistryService
from tests.api_helpers import OCI_MANIFEST, make_image, push_image
from tests.conftest import InProcessServer
from tests.databases import TestDatabase, admin_dsn, backends
from tests.support import RegistryProcess, wait_for
from tests.tcpproxy import TCPProxy
from tests.test_postgresql import (
    call,
    child_pids,
    digest,
    image,
    manifest_digest,
    postgres_address,
    push_blob,
    via,
)

pytestmark = pytest.mark.skipif(
    "postgresql" not in backends(), reason="OCIREG_TEST_BACKENDS leaves PostgreSQL out"
)

#: Longest wait for another process to hear of a change, or a connection to come back.
WAIT = 15.0

NAME = "shared/app"
TAG = f"/v2/{NAME}/manifests/latest"


@pytest_twisted.async_yield_fixture
async def two(tmp_path, pg):
    """Two registries, as two processes would be, on one database and one data directory."""
    started: list[RegistryService] = []
    servers = []
    try:
        for _ in range(2):
            config = Config(
                listen=("tcp:0:interface=127.0.0.1",), data_dir=str(tmp_path / "data"),
                database=pg.dsn,
            )
            service = RegistryService(config, reactor)
            service.startService()
            started.append(service)
            ports = await service.ready
            servers.append(InProcessServer(service, ports[0]))
        yield servers
    finally:
        for service in started:
            await service.stopService()


@pytest_twisted.async_yield_fixture
async def proxied(tmp_path, pg):
    """Start a registry on `pg` through a TCP proxy the test can cut, or directly.

    `await start(through_proxy, **settings)`: the server and its proxy (None if
    direct); everything started is stopped after the test.
    """
    services: list[RegistryService] = []
    proxies: list[TCPProxy] = []

    async def start(through_proxy: bool, **settings) -> tuple[InProcessServer, TCPProxy | None]:
        proxy = None
        database = pg.dsn
        if through_proxy:
            proxy = TCPProxy(postgres_address()).start()
            proxies.append(proxy)
            database = via(proxy, pg)
        config = Config(
            listen=("tcp:0:interface=127.0.0.1",), data_dir=str(tmp_path / "data"),
            database=database, **settings,
        )
        service = RegistryService(config, reactor)
        service.startService()
        services.append(service)
        ports = await service.ready
        return InProcessServer(service, ports[0]), proxy

    try:
        yield start
    finally:
        for service in services:
            await service.stopService()
        for proxy in proxies:
            proxy.stop()


async def get(server, path: str = TAG, method: str = "GET") -> tuple[int, bytes]:
    response = await server.request(method, path, headers={"Accept": OCI_MANIFEST})
    return response.code, await response.content()


async def eventually(condition: Callable[[], Awaitable[object]], what: str) -> object:
    """`await condition()`'s first true value, tried until WAIT s have passed; else fail."""
    deadline = reactor.seconds() + WAIT
    while True:
        value = await condition()
        if value:
            return value
        if reactor.seconds() > deadline:
            raise AssertionError(f"gave up after {WAIT} s waiting for {what}")
        await deferLater(reactor, 0.02)


async def eventually_answers(
    server, wanted: int | tuple[int, bytes], what: str, path: str = TAG, method: str = "GET"
) -> None:
    """Ask `path` until `server` answers `wanted`: a status, or a status and a body."""

    async def answers() -> bool:
        code, body = await get(server, path, method)
        return (code, body) == wanted if isinstance(wanted, tuple) else code == wanted

    await eventually(answers, what)


async def cached(server, path: str = TAG, method: str = "GET") -> tuple[int, bytes]:
    """Ask `path` until `server`'s cache keeps the answer; the answer."""
    first = await get(server, path, method)

    async def kept() -> bool:
        # A change heard of while a read is under way keeps its answer out: read again.
        assert await get(server, path, method) == first
        return len(server.registry.cache) > 0

    await eventually(kept, f"{path} to be kept in the cache")
    return first


async def heard_everywhere(a, b, listener: _Listening, payload: str) -> None:
    """Notify `payload` from the test; wait until `listener` and both registries have heard it.

    Notifications arrive in commit order: each has then heard every earlier one too.
    """
    await cached(a)
    await cached(b)
    listener.notify(payload)

    async def everywhere() -> bool:
        return (await listener.has_heard(payload) and len(a.registry.cache) == 0
                and len(b.registry.cache) == 0)

    await eventually(everywhere, "the test's notification to be heard everywhere")


@pytest_twisted.ensureDeferred
async def test_a_tag_moved_or_deleted_through_one_process_is_served_so_by_the_other(two):
    a, b = two
    first, second = make_image(), make_image()
    await push_image(a, NAME, first)
    assert await cached(b) == (200, first.body)

    await push_image(a, NAME, second)
    await eventually_answers(b, (200, second.body), "the other process to serve the moved tag")
    assert await cached(b) == (200, second.body)
    assert (await a.request("DELETE", TAG)).code == 202
    await eventually_answers(b, 404, "the other process to stop serving the deleted tag")


@pytest_twisted.ensureDeferred
async def test_blob_head_cached_by_one_process_follows_a_delete_through_the_other(two):
    a, b = two
    pushed = make_image()
    await push_image(a, NAME, pushed)
    layer = pushed.document["layers"][0]["digest"]
    blob = f"/v2/{NAME}/blobs/{layer}"
    assert (await cached(b, blob, "HEAD"))[0] == 200
    response = await a.request("DELETE", f"/v2/{NAME}/manifests/{pushed.digest}")
    assert response.code == 202
    await eventually_answers(
        b, 404, "the other process to stop serving the deleted layer", blob, "HEAD"
    )


@pytest_twisted.ensureDeferred
async def test_a_process_serves_its_own_write_on_the_very_next_read(two):
    a, _ = two
    first, second = make_image(), make_image()
    await push_image(a, NAME, first)
    assert await cached(a) == (200, first.body)
    await push_image(a, NAME, second)
    assert await get(a) == (200, second.body)
    assert (await a.request("DELETE", TAG)).code == 202
    assert (await get(a))[0] == 404


@pytest_twisted.ensureDeferred
async def test_reads_keep_the_cache_and_send_no_notification(two, pg):
    a, b = two
    await push_image(a, NAME, make_image())
    listener = _Listening(pg)
    try:
        # From here on, nothing of the push is still on its way.
        await heard_everywhere(a, b, listener, "before")
        await cached(a)
        await cached(b)
        for path in (TAG, f"/v2/{NAME}/tags/list", "/api/v1/repositories/"):
            assert (await get(a, path))[0] == 200
        assert (await get(b, f"/v2/{NAME}/tags/list"))[0] == 200
        assert len(a.registry.cache) > 0 and len(b.registry.cache) > 0
        # Had the reads sent notifications, they would arrive before this one.
        await heard_everywhere(a, b, listener, "after")
        assert [n.payload for n in listener.heard] == ["before", "after"]
    finally:
        listener.close()


@pytest_twisted.ensureDeferred
async def test_a_transaction_tells_a_change_by_rows_changed(pg):
    store = await PostgreSQLMetadataStore.open(pg.dsn, reactor)
    listener = _Listening(pg)
    changes = []
    store.on_change(lambda: changes.append(1))
    try:
        await store.transact(lambda txn: txn.execute("CREATE TABLE t (x integer)"))
        await store.transact(lambda txn: txn.execute("SELECT count(*) FROM t"))
        await store.transact(lambda txn: txn.execute("UPDATE t SET x = 1 WHERE x = 0"))
        await store.transact(lambda txn: txn.execute("DELETE FROM t"))
        assert changes == []
        await store.transact(lambda txn: txn.execute("INSERT INTO t VALUES (1)"))
        # Reported before the transaction's caller resumes.
        assert changes == [1]
        await eventually(listener.heard_any, "the insert's notification")
        assert len(listener.heard) == 1
    finally:
        listener.close()
        await store.close()


@pytest_twisted.ensureDeferred
async def test_no_cached_answer_while_not_listening_and_caching_again_once_back(two, pg):
    a, b = two
    first, second, third = make_image(), make_image(), make_image()
    await push_image(a, NAME, first)
    assert await cached(b) == (200, first.body)
    with _no_new_connections(pg):
        assert _terminate_listeners(pg) == 2

        async def b_not_listening() -> bool:
            return not b.registry.metadata.catch_up()

        await eventually(b_not_listening, "the other process to notice its listener's loss")
        # What b kept stays, for a database it cannot reach; it reaches this one.
        kept = len(b.registry.cache)
        # Its NOTIFY reaches no one in b: only the cache being off keeps b right.
        await push_image(a, NAME, second)
        assert await get(b) == (200, second.body)
        assert await get(b) == (200, second.body)
        assert len(b.registry.cache) == kept

    async def b_listening() -> bool:
        return b.registry.metadata.catch_up()

    await eventually(b_listening, "the other process to listen again")
    assert await cached(b) == (200, second.body)
    await push_image(a, NAME, third)
    await eventually_answers(b, (200, third.body), "the other process to hear of changes again")


@pytest_twisted.ensureDeferred
async def test_closing_the_store_closes_its_listener_quietly(pg):
    warnings = []

    def observe(event: dict) -> None:
        if event.get("log_level") is not None and event["log_level"].name in ("warn", "error",
                                                                               "critical"):
            warnings.append(event)

    store = await PostgreSQLMetadataStore.open(pg.dsn, reactor)
    assert store.catch_up()
    globalLogPublisher.addObserver(observe)
    try:
        await store.close()
        assert not store.catch_up()
        # Let the reactor see the closed sockets.
        await deferLater(reactor, 0.1)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert warnings == []
    assert _listener_pids(pg) == []


def push(base: str, seed: str) -> str:
    """Push an image made from `seed` under NAME:latest through `base`; its digest."""
    config, layer, manifest = image(seed)
    push_blob(base, NAME, config)
    push_blob(base, NAME, layer)
    status, _, body = call("PUT", f"{base}{TAG}", manifest, {"Content-Type": OCI_MANIFEST})
    assert status == 201, body
    return digest(manifest)


def test_two_real_processes_serve_each_others_tag_moves(tmp_path, pg):
    started = []
    try:
        for _ in range(2):
            started.append(RegistryProcess(tmp_path / "data").start("--database", pg.dsn))
        a, b = started
        first = push(a.url, "first")
        assert manifest_digest(b.url, NAME, "latest") == first
        assert manifest_digest(b.url, NAME, "latest") == first
        second = push(a.url, "second")
        wait_for(lambda: manifest_digest(b.url, NAME, "latest") == second,
                 "the other process to serve the moved tag", WAIT, b.log)
        assert call("DELETE", f"{a.url}{TAG}")[0] == 202
        wait_for(lambda: manifest_digest(b.url, NAME, "latest") is None,
                 "the other process to stop serving the deleted tag", WAIT, b.log)
    finally:
        for process in started:
            process.stop()


def test_a_worker_serves_a_tag_moved_through_its_parent(tmp_path, pg):
    process = RegistryProcess(tmp_path / "data").start("--database", pg.dsn, "--workers", "2")
    parent = process.process.pid
    try:
        (worker,) = wait_for(lambda: child_pids(parent), "a worker started", WAIT)
        first = push(process.url, "first")
        with _paused(parent):
            # Only the worker answers now: it reads, and keeps, the first image.
            for _ in range(3):
                assert manifest_digest(process.url, NAME, "latest") == first
        with _paused(worker):
            second = push(process.url, "second")
        with _paused(parent):
            wait_for(lambda: manifest_digest(process.url, NAME, "latest") == second,
                     "the worker to serve the tag its parent moved", WAIT, process.log)
    finally:
        process.stop()


class _paused:
    """While in it, process `pid` is stopped (SIGSTOP), so the other process answers."""

    def __init__(self, pid: int) -> None:
        self._pid = pid

    def __enter__(self) -> None:
        os.kill(self._pid, signal.SIGSTOP)

    def __exit__(self, *exc: object) -> None:
        os.kill(self._pid, signal.SIGCONT)


class _Listening:
    """A plain psycopg2 connection LISTENing on the stores' channel in `pg`."""

    def __init__(self, pg: TestDatabase) -> None:
        self.connection = psycopg2.connect(pg.dsn, connect_timeout=10)
        self.connection.autocommit = True
        with self.connection.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
        self.heard: list = []

    async def heard_any(self) -> bool:
        # Never blocks: poll reads only what has arrived.
        self.connection.poll()
        self.heard.extend(self.connection.notifies)
        del self.connection.notifies[:]
        return bool(self.heard)

    async def has_heard(self, payload: str) -> bool:
        await self.heard_any()
        return payload in [n.payload for n in self.heard]

    def notify(self, payload: str) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {CHANNEL}, %s", (payload,))

    def close(self) -> None:
        self.connection.close()


def _admin(statement: str, params: tuple = ()) -> list[tuple]:
    connection = psycopg2.connect(admin_dsn(), connect_timeout=10)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def _listener_pids(pg: TestDatabase) -> list[int]:
    return [pid for (pid,) in _admin(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND query = %s",
        (pg.name, f"LISTEN {CHANNEL}"),
    )]


def _terminate_listeners(pg: TestDatabase) -> int:
    """End the stores' listening connections (their last statement was LISTEN); how many."""
    pids = _listener_pids(pg)
    for pid in pids:
        _admin("SELECT pg_terminate_backend(%s)", (pid,))
    return len(pids)


class _no_new_connections:
    """While in it, `pg` refuses new connections (the open ones go on)."""

    def __init__(self, pg: TestDatabase) -> None:
        self._name = pg.name

    def __enter__(self) -> None:
        _admin(f'ALTER DATABASE "{self._name}" ALLOW_CONNECTIONS false')

    def __exit__(self, *exc: object) -> None:
        _admin(f'ALTER DATABASE "{self._name}" ALLOW_CONNECTIONS true')


@pytest_twisted.ensureDeferred
async def test_a_failed_notify_rolls_the_write_back_and_leaves_the_connection_usable(pg):
    store = await PostgreSQLMetadataStore.open(pg.dsn, reactor, size=1)
    changes = []
    store.on_change(lambda: changes.append(1))
    try:
        await store.transact(lambda txn: txn.execute("CREATE TABLE t (x integer)"))
        # PostgreSQL refuses a payload this long, as it would a NOTIFY to a full queue.
        store._notify_and_commit = f"NOTIFY {CHANNEL}, '{'x' * 9000}'; COMMIT"
        with pytest.raises(psycopg2.errors.InvalidParameterValue):
            await store.transact(lambda txn: txn.execute("INSERT INTO t VALUES (1)"))
        assert changes == [1]
        rows = await store.transact(lambda txn: txn.execute("SELECT count(*) FROM t"))
        assert rows == [(0,)]
    finally:
        await store.close()


async def cut_off(server, proxy: TCPProxy) -> None:
    """Cut `server` off from the database; wait until it knows."""
    proxy.down()

    async def deaf() -> bool:
        return not server.registry.metadata.catch_up()

    await eventually(deaf, "the registry to notice the database is gone")


@pytest_twisted.ensureDeferred
async def test_cached_pulls_are_served_while_the_database_is_cut_off_and_fresh_once_back(
    proxied,
):
    cut, proxy = await proxied(True)
    other, _ = await proxied(False)
    first, second, third = make_image(), make_image(), make_image()
    await push_image(other, NAME, first)
    layer = f"/v2/{NAME}/blobs/{first.document['layers'][0]['digest']}"
    assert await cached(cut) == (200, first.body)
    assert await cached(cut, layer, "HEAD") == (200, b"")
    await cut_off(cut, proxy)

    # What it answered before, it answers still: the manifest, the layer's lookup and bytes.
    for _ in range(3):
        assert await get(cut) == (200, first.body)
    assert (await get(cut, layer, "HEAD"))[0] == 200
    assert await get(cut, layer) == (200, first.blobs[first.document["layers"][0]["digest"]])
    # What it never answered before, it cannot; and writes are refused.
    assert (await get(cut, f"/v2/{NAME}/manifests/{first.digest}"))[0] == 503
    response = await cut.request(
        "PUT", f"/v2/{NAME}/manifests/moved", data=first.body,
        headers={"Content-Type": first.media_type},
    )
    assert response.code == 503
    assert (await cut.request("POST", f"/v2/{NAME}/blobs/uploads/")).code == 503

    # The tag moves meanwhile through another process; its notification is lost to `cut`.
    await push_image(other, NAME, second)
    assert await get(cut) == (200, first.body)
    proxy.up()
    await eventually_answers(cut, (200, second.body), "the moved tag served once back")
    # Never the pre-outage answer again, and caching as before.
    assert await cached(cut) == (200, second.body)
    await push_image(other, NAME, third)
    await eventually_answers(cut, (200, third.body), "a later move heard of as before")


@pytest_twisted.ensureDeferred
async def test_answers_from_before_an_outage_are_served_for_stale_cache_max_age_seconds_only(
    proxied,
):
    cut, proxy = await proxied(True, stale_cache_max_age=2)
    pushed = make_image()
    await push_image(cut, NAME, pushed)
    assert await cached(cut) == (200, pushed.body)
    await cut_off(cut, proxy)
    assert await get(cut) == (200, pushed.body)
    await deferLater(reactor, 2.2)
    assert (await get(cut))[0] == 503


@pytest_twisted.ensureDeferred
async def test_with_stale_cache_max_age_0_nothing_is_served_while_the_database_is_cut_off(
    proxied,
):
    cut, proxy = await proxied(True, stale_cache_max_age=0)
    pushed = make_image()
    await push_image(cut, NAME, pushed)
    assert await cached(cut) == (200, pushed.body)
    await cut_off(cut, proxy)
    assert (await get(cut))[0] == 503
