"""Fixtures: a registry in a process of its own (`registry`) or in the test's reactor (`server`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread

from ocireg.config import Config
from ocireg.service import RegistryService
from tests.databases import DatabasePool, TestDatabase, backends
from tests.support import RegistryProcess


@pytest.fixture(params=backends())
def backend(request) -> str:
    """The metadata backend of the test's registry: every registry test runs on each."""
    return request.param


@pytest.fixture
def pg():
    """A fresh PostgreSQL database of its own, dropped after the test."""
    db = TestDatabase().create()
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture(scope="session")
def database_pool():
    """The session's migrated PostgreSQL databases, emptied between tests (see tests.databases)."""
    pool = DatabasePool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def database(backend, database_pool):
    """The test registry's `database` setting: "" (SQLite) or an empty, migrated PostgreSQL one.

    Nothing of an earlier test is left in it: no row, no connection.
    """
    if backend == "sqlite":
        yield ""
        return
    db = database_pool.take()
    try:
        yield db.dsn
    finally:
        database_pool.give_back(db)


@pytest.fixture
def blank_database(backend):
    """Like `database`, but a PostgreSQL database with no schema at all, dropped after the test."""
    if backend == "sqlite":
        yield ""
        return
    db = TestDatabase().create()
    try:
        yield db.dsn
    finally:
        db.drop()


@pytest.fixture
def registry(tmp_path, database):
    """A fresh ocireg process with empty storage, stopped after the test."""
    extra = ("--database", database) if database else ()
    server = RegistryProcess(tmp_path / "ocireg-data").start(*extra)
    try:
        yield server
    finally:
        server.stop()


class InProcessServer:
    """ocireg serving on a loopback port inside the test's own reactor.

    `port`, `host`, `url` and `data_dir` (when given) are those a
    `RegistryProcess` has.
    """

    def __init__(self, service: RegistryService, port, data_dir: Path | None = None) -> None:
        self.service = service
        self.port = port.getHost().port
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.data_dir = data_dir

    @property
    def registry(self):
        return self.service._registry

    def request(self, method: str, path: str, **kwargs):
        """A treq request to `path` on this server, read fully; a Deferred of the response."""
        kwargs.setdefault("timeout", 30)
        return treq.request(method, self.url + path, persistent=False, **kwargs)


async def start_in_process(config: Config) -> InProcessServer:
    """ocireg on `config`, started in the test's reactor; stop its `service` after the test."""
    service = RegistryService(config, reactor)
    service.startService()
    ports = await service.ready
    return InProcessServer(service, ports[0], Path(config.data_dir))


@pytest_twisted.async_yield_fixture
async def server(tmp_path, database):
    """A fresh ocireg with empty storage in the test's reactor, on a loopback port of its own."""
    started = await start_in_process(Config(
        listen=("tcp:0:interface=127.0.0.1",), data_dir=str(tmp_path / "data"), database=database
    ))
    try:
        yield started
    finally:
        await started.service.stopService()


@pytest_twisted.async_yield_fixture
async def servers():
    """The in-process servers a test starts with `start_from_thread`; stopped after it."""
    started: list[InProcessServer] = []
    yield started
    for server in started:
        await server.service.stopService()


def start_from_thread(servers: list[InProcessServer], config: Config) -> InProcessServer:
    """ocireg on `config` in the reactor, for a test body running in a thread (in_thread)."""
    server = blockingCallFromThread(
        reactor, lambda: Deferred.fromCoroutine(start_in_process(config))
    )
    servers.append(server)
    return server
