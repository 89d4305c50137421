"""The service tree: what joins it, in which order it stops, and how a start fails."""

from __future__ import annotations

import socket

import pytest
import pytest_twisted
import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater

from ocireg.config import Config, ConfigError
from ocireg.datadir import DataDirLock
from ocireg.db.probe import answers
from ocireg.service import RegistryService
from ocireg.serving import ListeningService
from tests.support import free_port

LOOPBACK = "tcp:0:interface=127.0.0.1"


def _config(tmp_path, **settings) -> Config:
    return Config(**{"listen": (LOOPBACK,), "data_dir": str(tmp_path / "data"), **settings})


def _lock_is_free(data_dir: str) -> bool:
    try:
        DataDirLock.take(data_dir, exclusive=True).release()
    except ConfigError:
        return False
    return True


@pytest_twisted.ensureDeferred
async def test_the_running_tree_holds_each_store_timer_and_endpoint_as_a_named_child(
    tmp_path, database
):
    config = _config(tmp_path, database=database, admin_listen=(LOOPBACK,))
    service = RegistryService(config, reactor)
    service.startService()
    try:
        ports = await service.ready
        children = list(service)
        assert [child.name for child in children] == [
            "data-dir-lock", "blob-threads", "metadata", "auth", "housekeeping",
            "admin_listen 0", "drain", "listen 0",
        ]
        assert all(child.running for child in children)
        main = service.getServiceNamed("listen 0")
        assert isinstance(main, ListeningService)
        assert [main.port] == ports
        assert service.getServiceNamed("admin_listen 0").port not in ports
    finally:
        await service.stopService()
    assert not any(child.running for child in children)


class _Held(Protocol):
    """A client that sends what it is told and keeps what comes back."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason) -> None:
        self.closed.callback(self.received)


def _uploads_in_progress(service: RegistryService) -> float:
    (family,) = (f for f in text_string_to_metric_families(service.metrics.render().decode())
                 if f.name == "ocireg_uploads_in_progress")
    return family.samples[0].value


async def _until(condition, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"not so within {timeout} s")


@pytest_twisted.ensureDeferred
async def test_a_stop_stops_listening_then_drains_the_requests_in_flight_then_closes_the_stores(
    tmp_path,
):
    config = _config(tmp_path)
    service = RegistryService(config, reactor)
    service.startService()
    (port,) = await service.ready
    address = port.getHost()
    started = await treq.post(f"http://127.0.0.1:{address.port}/v2/team/app/blobs/uploads/",
                              persistent=False)
    assert started.code == 202
    location = started.headers.getRawHeaders("Location")[0]
    client = _Held()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", address.port), client)
    client.transport.write(
        f"PATCH {location} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        "Content-Length: 8\r\n\r\nhalf".encode()
    )
    await _until(lambda: _uploads_in_progress(service) == 1)

    stopping = service.stopService()
    await deferLater(reactor, 0.2, lambda: None)
    # The port no longer listens, while the request in flight holds up the stop
    # and the stores it needs are still open.
    with pytest.raises(ConnectionRefusedError):
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", address.port), Protocol())
    assert not stopping.called
    await answers(service.registry.metadata)
    assert not _lock_is_free(config.data_dir)

    client.transport.write(b" two")
    answer = await client.closed
    assert answer.startswith(b"HTTP/1.1 202 "), answer
    await stopping
    with pytest.raises(RuntimeError, match="closed"):
        await answers(service.registry.metadata)
    assert _lock_is_free(config.data_dir)


@pytest_twisted.ensureDeferred
async def test_a_child_that_cannot_start_fails_the_start_naming_its_setting_and_the_rest_close(
    tmp_path,
):
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    try:
        busy = f"tcp:{held.getsockname()[1]}:interface=127.0.0.1"
        config = _config(tmp_path, listen=(LOOPBACK, busy))
        service = RegistryService(config, reactor)
        service.startService()
        with pytest.raises(ConfigError, match=f"setting 'listen': cannot listen on '{busy}'"):
            await service.ready
        # What joined before the failure runs until the tree stops: under
        # twistd, the daemon stops it at once.
        assert service.getServiceNamed("listen 0").running
        first = service.getServiceNamed("listen 0").port.getHost().port
        await service.stopService()
    finally:
        held.close()
    assert _lock_is_free(config.data_dir)
    with pytest.raises(ConnectionRefusedError):
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", first), Protocol())


@pytest_twisted.ensureDeferred
async def test_a_bad_endpoint_fails_the_start_before_anything_listens(tmp_path):
    port = free_port()
    config = _config(tmp_path, listen=(f"tcp:{port}:interface=127.0.0.1",),
                     admin_listen=("tcp:nonsense",))
    service = RegistryService(config, reactor)
    service.startService()
    with pytest.raises(ConfigError, match="setting 'admin_listen': bad endpoint 'tcp:nonsense'"):
        await service.ready
    assert not any(isinstance(child, ListeningService) for child in service)
    await service.stopService()
    assert _lock_is_free(config.data_dir)


@pytest_twisted.ensureDeferred
async def test_a_stop_while_the_stores_open_closes_them_and_cancels_readiness(tmp_path):
    config = _config(tmp_path)
    service = RegistryService(config, reactor)
    service.startService()
    # The SQLite store opens on a thread of its own: the start is still under way.
    assert not service.ready.called
    await service.stopService()
    with pytest.raises(CancelledError):
        await service.ready
    assert not service.running
    assert "listen 0" not in service.namedServices
    assert _lock_is_free(config.data_dir)
