"""The cap on open upload sessions per client: 429 beyond it, a slot back when one ends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg2
import pytest_twisted
from twisted.internet import reactor

from ocireg.config import Config
from ocireg.db.migrations import migrations
from ocireg.domain.errors import UPLOADS_RETRY_AFTER
from ocireg.domain.uploads import client_key
from ocireg.service import RegistryService
from tests.api_helpers import (
    assert_oci_error,
    digest_of,
    header,
    location_path,
    random_bytes,
    start_upload,
    with_query,
)
from tests.auth_helpers import GROUPS, RULES, user, write_htpasswd
from tests.conftest import InProcessServer

LIMIT = 3


async def _start(tmp_path: Path, database: str, **settings) -> InProcessServer:
    config = Config(
        listen=("tcp:0:interface=127.0.0.1",), data_dir=str(tmp_path / "data"),
        database=database, max_uploads_per_client=LIMIT, **settings,
    )
    service = RegistryService(config, reactor)
    service.startService()
    ports = await service.ready
    return InProcessServer(service, ports[0])


@pytest_twisted.async_yield_fixture
async def capped(tmp_path, database):
    """A registry (auth off: every caller is anonymous, counted by address) capped at LIMIT."""
    server = await _start(tmp_path, database)
    try:
        yield server
    finally:
        await server.service.stopService()


async def _refused(caller, name: str, query: str = "", **kwargs) -> None:
    response = await caller.request("POST", f"/v2/{name}/blobs/uploads/{query}", **kwargs)
    error = await assert_oci_error(response, 429, "TOOMANYREQUESTS")
    assert header(response, "Retry-After") == str(UPLOADS_RETRY_AFTER)
    assert str(LIMIT) in error["message"]


def _upload_files(server: InProcessServer) -> int:
    return len(list((Path(server.service._config.data_dir) / "uploads").iterdir()))


@pytest_twisted.ensureDeferred
async def test_upload_sessions_beyond_the_cap_are_refused_until_one_completes_or_is_cancelled(
    capped,
):
    sessions = [await start_upload(capped, "team/app") for _ in range(LIMIT)]
    await _refused(capped, "team/app")
    # Another repository is no way around it, nor is a monolithic upload.
    await _refused(capped, "team/other")
    data = random_bytes(2000)
    await _refused(capped, "team/app", f"?digest={digest_of(data)}", data=data,
                   headers={"Content-Type": "application/octet-stream"})
    # A refusal leaves nothing behind.
    assert _upload_files(capped) == LIMIT

    finished = await capped.request(
        "PUT", with_query(sessions[0], f"digest={digest_of(data)}"), data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    await finished.content()
    assert finished.code == 201
    sessions[0] = await start_upload(capped, "team/app")
    await _refused(capped, "team/app")

    cancelled = await capped.request("DELETE", sessions[1])
    await cancelled.content()
    assert cancelled.code == 204
    await start_upload(capped, "team/app")
    await _refused(capped, "team/app")


@pytest_twisted.ensureDeferred
async def test_the_cap_counts_each_user_apart(tmp_path, database):
    server = await _start(
        tmp_path, database, auth_htpasswd=str(write_htpasswd(tmp_path / "htpasswd")),
        auth_rules=RULES, auth_groups=GROUPS,
    )
    try:
        alice, bob = user(server, "alice"), user(server, "bob")
        for _ in range(LIMIT):
            opened = await alice.request("POST", "/v2/team/app/blobs/uploads/")
            await opened.content()
            assert opened.code == 202
        await _refused(alice, "team/app")
        # bob, from the same address, has his own sessions (in his own namespace).
        for _ in range(LIMIT):
            opened = await bob.request("POST", "/v2/bob/app/blobs/uploads/")
            await opened.content()
            assert opened.code == 202
        await _refused(bob, "bob/app")
    finally:
        await server.service.stopService()


@pytest_twisted.ensureDeferred
async def test_sessions_opened_through_one_process_count_in_another(tmp_path, pg):
    first = await _start(tmp_path, pg.dsn)
    second = await _start(tmp_path, pg.dsn)
    try:
        for _ in range(LIMIT - 1):
            await start_upload(first, "team/app")
        await start_upload(second, "team/app")
        await _refused(first, "team/app")
        await _refused(second, "team/app")
    finally:
        await first.service.stopService()
        await second.service.stopService()


# Upgrading from the schema before upload owners


def _previous_schema(tmp_path: Path, database: str, uuid: str) -> None:
    """A data directory and database as the previous ocireg left them, with upload `uuid` open."""
    backend = "postgresql" if database else "sqlite"
    previous = [m for m in migrations(backend) if m.number < 3]
    statements = ["CREATE TABLE schema_version (version INTEGER NOT NULL)",
                  f"INSERT INTO schema_version (version) VALUES ({len(previous)})"]
    for migration in previous:
        statements.extend(migration.statements())
    statements.append(
        "INSERT INTO uploads (uuid, repository, created, updated) "
        f"VALUES ('{uuid}', 'team/app', 1e9, 4e9)"
    )
    data_dir = tmp_path / "data"
    (data_dir / "uploads").mkdir(parents=True)
    (data_dir / "uploads" / uuid).write_bytes(b"")
    if backend == "sqlite":
        connection = sqlite3.connect(data_dir / "metadata.sqlite3")
        with connection:
            for statement in statements:
                connection.execute(statement)
        connection.close()
        return
    connection = psycopg2.connect(database, connect_timeout=10)
    try:
        with connection, connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()


@pytest_twisted.ensureDeferred
async def test_an_upload_opened_before_the_upgrade_finishes_after_it_and_counts_for_nobody(
    tmp_path, blank_database
):
    uuid = "0b5e4c3e-57a1-4d6f-9a38-8c1d3c6a7e10"
    _previous_schema(tmp_path, blank_database, uuid)
    server = await _start(tmp_path, blank_database)
    try:
        for _ in range(LIMIT):
            await start_upload(server, "team/app")
        await _refused(server, "team/app")
        data = random_bytes(3000)
        old = f"/v2/team/app/blobs/uploads/{uuid}"
        finished = await server.request(
            "PUT", with_query(old, f"digest={digest_of(data)}"), data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        await finished.content()
        assert finished.code == 201
        assert location_path(header(finished, "Location")).endswith(digest_of(data))
    finally:
        await server.service.stopService()


def test_anonymous_clients_count_by_address_and_ipv6_ones_by_their_64():
    assert client_key("alice", "192.0.2.1") == "user:alice"
    assert client_key(None, "192.0.2.1") == "address:192.0.2.1"
    assert client_key(None, "::ffff:192.0.2.1") == "address:192.0.2.1"
    assert client_key(None, "2001:db8:1:2:aaaa::1") == client_key(None, "2001:db8:1:2::ffff")
    assert client_key(None, "2001:db8:1:2::1") != client_key(None, "2001:db8:1:3::1")
