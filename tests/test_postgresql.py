"""Several ocireg processes on one PostgreSQL database, and PostgreSQL going away.

These tests run real ocireg processes (tests/support.py) against a database
of their own on the test server (tests/databases.py), and speak HTTP to them
with plain urllib from threads: every call has a timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError
from twisted.internet.task import deferLater

from ocireg.db.migrations import migrations
from ocireg.db.pgchanges import CONNECT_TIMEOUT
from ocireg.db.postgresql import PostgreSQLMetadataStore
from ocireg.errors import RegistryError
from tests.databases import TestDatabase, admin_dsn, backends
from tests.support import RegistryProcess, wait_for
from tests.tcpproxy import TCPProxy

pytestmark = pytest.mark.skipif(
    "postgresql" not in backends(), reason="OCIREG_TEST_BACKENDS leaves PostgreSQL out"
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TIMEOUT = 30


@pytest.fixture
def processes(tmp_path, pg):
    """Start ocireg processes on one data directory and `pg`; all stopped after the test."""
    started: list[RegistryProcess] = []

    def start(*extra: str, database: str | None = None) -> RegistryProcess:
        process = RegistryProcess(tmp_path / "data").start(
            "--database", database or pg.dsn, *extra
        )
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


# A small synchronous registry client.


def call(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = TIMEOUT) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(base: str, name: str, data: bytes) -> None:
    status, _, body = call(
        "POST", f"{base}/v2/{name}/blobs/uploads/?digest={digest(data)}", data,
        {"Content-Type": "application/octet-stream"},
    )
    assert status == 201, (status, body[:300])


def image(seed: str) -> tuple[bytes, bytes, bytes]:
    """A config, a layer and the manifest of both, unique to `seed`."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = hashlib.sha256(seed.encode()).digest() * 64
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(layer), "size": len(layer)}],
    }).encode()
    return config, layer, manifest


def push_image(base: str, name: str, tag: str) -> tuple[int, str, bytes]:
    """Push a fresh image under `tag`: the manifest PUT's status, its digest and body."""
    config, layer, manifest = image(f"{name}:{tag}")
    push_blob(base, name, config)
    push_blob(base, name, layer)
    status, _, body = call("PUT", f"{base}/v2/{name}/manifests/{tag}", manifest,
                           {"Content-Type": OCI_MANIFEST})
    return status, digest(manifest), body


def _pushed_unless_unavailable(base: str, name: str, tag: str) -> bool:
    """Whether a push of `tag` succeeded; False when it met a 503 (never another error)."""
    try:
        status, _, body = push_image(base, name, tag)
    except AssertionError as e:
        if not str(e).startswith("(503,"):
            raise
        return False
    assert status in (201, 503), (status, body[:300])
    return status == 201


def manifest_digest(base: str, name: str, tag: str) -> str | None:
    status, _, body = call("GET", f"{base}/v2/{name}/manifests/{tag}",
                           headers={"Accept": OCI_MANIFEST})
    return digest(body) if status == 200 else None


def versions_in_database(pg: TestDatabase, name: str) -> tuple[int, list[int]]:
    """The repository's latest_version, and the numbers of its versions, from the database."""
    latest = pg.query("SELECT latest_version FROM repositories WHERE name = %s", (name,))[0][0]
    numbers = pg.query(
        "SELECT v.number FROM repository_versions v JOIN repositories r "
        "ON r.id = v.repository_id WHERE r.name = %s ORDER BY v.number", (name,)
    )
    return latest, [n for (n,) in numbers]


def assert_linear_history(pg: TestDatabase, name: str) -> int:
    """Versions 0..latest all exist, each based on the one before; returns latest."""
    latest, numbers = versions_in_database(pg, name)
    assert numbers == list(range(latest + 1)), numbers
    bases = pg.query(
        "SELECT v.number, v.base_version FROM repository_versions v JOIN repositories r "
        "ON r.id = v.repository_id WHERE r.name = %s AND v.number > 0 ORDER BY v.number",
        (name,),
    )
    assert all(base == number - 1 for number, base in bases), bases
    current_tags = pg.query(
        "SELECT c.name, count(*) FROM repository_content c JOIN repositories r "
        "ON r.id = c.repository_id WHERE r.name = %s AND c.kind = 'tag' "
        "AND c.version_removed IS NULL GROUP BY c.name HAVING count(*) > 1", (name,)
    )
    assert current_tags == [], f"tags held twice in the latest version: {current_tags}"
    return latest


# Several processes.


def test_sixteen_concurrent_tag_pushes_through_two_processes_make_sixteen_gapless_versions(
    processes, pg
):
    first, second = processes(), processes()
    name = "team/app"
    tags = [f"v{i}" for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(
            lambda i: push_image((first, second)[i % 2].url, name, tags[i]), range(16)
        ))
    assert [status for status, _, _ in results] == [201] * 16, results
    assert assert_linear_history(pg, name) == 16
    reasons = pg.query(
        "SELECT v.reason FROM repository_versions v JOIN repositories r "
        "ON r.id = v.repository_id WHERE r.name = %s AND v.number > 0", (name,)
    )
    assert sorted(r for (r,) in reasons) == sorted(f"push tag {t}" for t in tags)
    status, _, body = call("GET", f"{second.url}/v2/{name}/tags/list")
    assert status == 200 and sorted(json.loads(body)["tags"]) == sorted(tags)
    for tag, (_, pushed, _) in zip(tags, results, strict=True):
        for process in (first, second):
            assert manifest_digest(process.url, name, tag) == pushed


def test_tag_writes_to_different_repositories_do_not_wait_for_each_other(processes, pg):
    """A transaction holding one repository's lock leaves another repository's pushes alone."""
    process = processes()
    push_image(process.url, "held/repo", "v0")
    blocker = psycopg2.connect(pg.dsn, connect_timeout=10)
    try:
        cursor = blocker.cursor()
        cursor.execute("SELECT id FROM repositories WHERE name = 'held/repo' FOR UPDATE")
        started = time.monotonic()
        status, _, body = push_image(process.url, "free/repo", "v1")
        assert status == 201, body
        assert time.monotonic() - started < 5
        # And a tag write to the locked repository waits for the lock (then goes through).
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(push_image, process.url, "held/repo", "v1")
            time.sleep(1.0)
            assert not waiting.done(), "the tag write did not wait for the repository lock"
            blocker.rollback()
            assert waiting.result(timeout=TIMEOUT)[0] == 201
    finally:
        blocker.close()
    assert assert_linear_history(pg, "held/repo") == 2


def test_chunked_upload_started_on_one_process_is_finished_on_another(processes):
    first, second = processes(), processes()
    name = "team/chunked"
    data = os.urandom(3 * 1024 * 1024 + 123)
    chunks = [data[:1_000_000], data[1_000_000:2_500_000], data[2_500_000:]]
    status, headers, _ = call("POST", f"{first.url}/v2/{name}/blobs/uploads/")
    assert status == 202
    location = headers["Location"]
    offset = 0
    # first, second, first: neither process holds the running digest of what
    # the other wrote, so each rebuilds it from the upload's file.
    for chunk, process in zip(chunks, (first, second, first), strict=True):
        status, headers, body = call(
            "PATCH", process.url + location, chunk,
            {"Content-Type": "application/octet-stream",
             "Content-Range": f"{offset}-{offset + len(chunk) - 1}"},
        )
        assert status == 202, (status, body[:300])
        offset += len(chunk)
        assert headers["Range"] == f"0-{offset - 1}"
        location = headers["Location"]
    status, _, body = call("GET", second.url + location)
    assert status == 204 and body == b""
    separator = "&" if "?" in location else "?"
    status, headers, body = call("PUT", f"{second.url}{location}{separator}digest={digest(data)}")
    assert status == 201, (status, body[:300])
    assert headers["Docker-Content-Digest"] == digest(data)
    for process in (first, second):
        status, _, body = call("GET", f"{process.url}/v2/{name}/blobs/{digest(data)}")
        assert status == 200 and body == data


def test_workers_share_the_port_and_a_worker_answers_while_the_parent_is_paused(processes):
    process = processes("--workers", "2")
    children = wait_for(lambda: child_pids(process.process.pid), "a worker process started", 15)
    assert len(children) == 1
    status, _, _ = push_image(process.url, "team/workers", "v1")
    assert status == 201
    os.kill(process.process.pid, signal.SIGSTOP)
    try:
        # Only the worker can answer now.
        for _ in range(5):
            assert manifest_digest(process.url, "team/workers", "v1") is not None
    finally:
        os.kill(process.process.pid, signal.SIGCONT)


def test_workers_stop_when_the_parent_is_killed(processes):
    process = processes("--workers", "3")
    children = wait_for(
        lambda: len(child_pids(process.process.pid)) == 2 and child_pids(process.process.pid),
        "two worker processes started", 15,
    )
    try:
        process.process.kill()
        process.process.wait(10)
        wait_for(lambda: not any(alive(pid) for pid in children), "the workers stopped", 15)
    finally:
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_workers_stop_with_the_parent(processes):
    process = processes("--workers", "2")
    children = wait_for(lambda: child_pids(process.process.pid), "a worker started", 15)
    process.stop()
    # twist re-raises the SIGTERM it stopped on once the reactor is done.
    assert process.process.returncode in (0, -signal.SIGTERM), process.log()
    wait_for(lambda: not any(alive(pid) for pid in children), "the worker stopped", 15)


def test_sighup_reaches_the_workers_by_restarting_them_on_the_new_settings(
    processes, pg, tmp_path
):
    config = tmp_path / "ocireg.toml"
    config.write_text(f'database = "{pg.dsn}"\nworkers = 2\nlog_level = "info"\n')
    process = processes("--config", str(config))
    (before,) = wait_for(lambda: child_pids(process.process.pid), "a worker started", 15)

    config.write_text(f'database = "{pg.dsn}"\nworkers = 2\nlog_level = "warn"\n')
    process.process.send_signal(signal.SIGHUP)

    after = wait_for(
        lambda: [pid for pid in child_pids(process.process.pid) if pid != before],
        "a new worker on the reloaded settings", 30,
    )
    wait_for(lambda: not alive(before), "the old worker stopped", 15)
    assert "restarted with the reloaded settings" in process.log()
    assert len(after) == 1
    for _ in range(4):
        assert call("GET", process.url + "/v2/")[0] == 200


def child_pids(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# Schema.


def test_both_backends_know_the_same_migrations():
    sqlite = [m.name for m in migrations("sqlite")]
    postgresql = [m.name for m in migrations("postgresql")]
    assert sqlite == postgresql


def test_start_up_migrates_once_and_a_newer_schema_is_refused(tmp_path, pg):
    first = RegistryProcess(tmp_path / "data").start("--database", pg.dsn)
    first.stop()
    second = RegistryProcess(tmp_path / "data").start("--database", pg.dsn)
    second.stop()
    assert pg.query("SELECT version FROM schema_version") == [(len(migrations("postgresql")),)]
    pg.query("UPDATE schema_version SET version = 999; COMMIT")
    refused = RegistryProcess(tmp_path / "data")
    with pytest.raises(RuntimeError, match="schema is version 999"):
        refused.start("--database", pg.dsn, timeout=15)


def test_unreachable_database_at_start_up_is_a_clear_error(tmp_path):
    process = RegistryProcess(tmp_path / "data")
    with pytest.raises(RuntimeError, match="cannot connect to postgresql://"):
        process.start("--database", "postgresql://postgres:secret@127.0.0.1:1/absent", timeout=15)
    assert "secret" not in process.log()


# PostgreSQL going away.


def postgres_address() -> tuple[str, int]:
    """Where the test PostgreSQL server listens: what a proxy forwards to."""
    parts = psycopg2.extensions.parse_dsn(admin_dsn())
    return parts.get("host", "127.0.0.1"), int(parts.get("port", 5432))


def via(proxy: TCPProxy, pg: TestDatabase) -> str:
    """The URL of `pg` through `proxy`."""
    parts = psycopg2.extensions.parse_dsn(pg.dsn)
    return f"postgresql://{parts['user']}@127.0.0.1:{proxy.port}/{pg.name}"


def test_database_down_during_pushes_gives_503_and_pushes_succeed_once_it_is_back(
    processes, pg
):
    proxy = TCPProxy(postgres_address()).start()
    try:
        process = processes(database=via(proxy, pg))
        name = "team/outage"
        assert push_image(process.url, name, "before")[0] == 201

        outcomes: dict[str, tuple[int, str]] = {}

        def push(tag: str) -> None:
            try:
                status, pushed, _ = push_image(process.url, name, tag)
            except AssertionError:
                status, pushed = 0, ""  # a blob upload was refused: the push failed
            outcomes[tag] = (status, pushed)

        with ThreadPoolExecutor(4) as pool:
            runs = [pool.submit(push, f"during{i}") for i in range(12)]
            time.sleep(0.3)
            proxy.down()
            # While it is down: a clear 503 with the OCI error JSON, quickly.
            started = time.monotonic()
            status, headers, body = call("GET", f"{process.url}/v2/{name}/manifests/before",
                                         headers={"Accept": OCI_MANIFEST}, timeout=10)
            assert status == 503, (status, body[:300])
            assert time.monotonic() - started < 5
            assert headers["Content-Type"].startswith("application/json")
            # The spec's table has no 5xx code; the 503 is the answer (see ocireg.api.errors.WIRE).
            assert json.loads(body)["errors"][0]["code"] == "TOOMANYREQUESTS"
            status, _, body = call("POST", f"{process.url}/v2/{name}/blobs/uploads/",
                                   timeout=10)
            assert status == 503 and json.loads(body)["errors"][0]["code"] == "TOOMANYREQUESTS"
            for run in runs:
                run.result(timeout=120)
        # Every push in flight either succeeded or failed cleanly (no hang, no 500).
        assert {status for status, _ in outcomes.values()} <= {0, 201, 503}, outcomes

        proxy.up()
        # ocireg reconnects by itself.
        wait_for(lambda: manifest_digest(process.url, name, "before"), "ocireg reconnected", 20)
        status, after, body = push_image(process.url, name, "after")
        assert status == 201, body
        assert manifest_digest(process.url, name, "after") == after
        for tag, (status, pushed) in outcomes.items():
            if status == 201:
                assert manifest_digest(process.url, name, tag) == pushed
        latest = assert_linear_history(pg, name)
        succeeded = sum(1 for status, _ in outcomes.values() if status == 201)
        # A push whose answer was lost with the connection may still have committed.
        assert latest >= 2 + succeeded
        assert "Unhandled Error" not in process.log()
    finally:
        proxy.stop()


def test_no_503_once_the_database_has_been_back_for_half_a_second(processes, pg):
    """A steady load through a 4 s outage: what starts 0.5 s after the return succeeds."""
    proxy = TCPProxy(postgres_address()).start()
    try:
        process = processes(database=via(proxy, pg))
        name = "team/return"
        assert push_image(process.url, name, "v0")[0] == 201
        # (started, answered, path, status) of every request of the load.
        answers: list[tuple[float, float, str, int]] = []
        stop = threading.Event()

        def load(path: str) -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    status = call("GET", process.url + path, timeout=10)[0]
                except OSError:
                    status = 0
                answers.append((started, time.monotonic(), path, status))
                stop.wait(0.02)

        # tags/list is never cached: each one is a transaction; /readyz is one too.
        paths = [f"/v2/{name}/tags/list", f"/v2/{name}/tags/list", "/readyz"]
        with ThreadPoolExecutor(len(paths)) as pool:
            runs = [pool.submit(load, path) for path in paths]
            try:
                time.sleep(0.5)
                proxy.down()
                # Long enough for a reconnection backoff to have grown past a second.
                time.sleep(4.0)
                restored = time.monotonic()
                proxy.up()
                time.sleep(3.0)
            finally:
                stop.set()
            for run in runs:
                run.result(timeout=30)
        statuses = {status for _, _, _, status in answers}
        assert statuses <= {200, 503}, sorted(statuses)
        during = [a for a in answers if restored - 3.0 < a[0] and a[1] < restored]
        assert during and all(status == 503 for *_, status in during), during
        late = [a for a in answers if a[0] > restored + 0.5 and a[3] != 200]
        assert late == [], (
            f"{len(late)} requests started over 0.5 s after the database returned failed, "
            f"the last {late[-1][0] - restored:.2f} s after it: {late[:5]}"
        )
        # Requests already waiting when it returned: answered by then, one way or the other.
        last_503 = max(answered for _, answered, _, status in answers if status == 503)
        assert last_503 - restored <= 0.5, f"a 503 {last_503 - restored:.2f} s after the return"
        after = [a for a in answers if a[0] > restored + 0.5]
        assert {path for _, _, path, _ in after} == set(paths)
        assert "Unhandled Error" not in process.log()
    finally:
        proxy.stop()


def test_terminated_database_connections_are_replaced_without_a_restart(processes, pg):
    process = processes()
    name = "team/terminated"
    assert push_image(process.url, name, "v0")[0] == 201
    for round_ in range(3):
        assert pg.terminate_connections() > 0
        # Requests right after may see 503 while connections come back, never a 500.
        for _ in range(3):
            status, _, body = call("GET", f"{process.url}/v2/{name}/tags/list", timeout=10)
            assert status in (200, 503), (status, body[:300])
        tag = f"r{round_}"
        wait_for(lambda tag=tag: _pushed_unless_unavailable(process.url, name, tag),
                 "a push succeeded after the connections were terminated", 20)
    assert_linear_history(pg, name)
    assert "Unhandled Error" not in process.log()


# The store's own statement runner


@pytest_twisted.ensureDeferred
async def test_a_transaction_whose_caller_gives_up_still_commits_and_the_connection_serves_on(pg):
    from twisted.internet import reactor

    store = await PostgreSQLMetadataStore.open(pg.dsn, reactor, size=1)
    try:
        await store.transact(lambda txn: txn.execute("CREATE TABLE t (x integer)"))

        async def slow_insert(txn):
            await txn.execute("INSERT INTO t VALUES (1)")
            await txn.execute("SELECT pg_sleep(0.3)")
            await txn.execute("INSERT INTO t VALUES (2)")

        asked = store.transact(slow_insert)
        # What a client hanging up does to its request's Deferreds.
        reactor.callLater(0.1, asked.cancel)
        with pytest.raises(CancelledError):
            await asked

        async def rows(txn):
            return await txn.execute("SELECT x FROM t ORDER BY x")

        # One connection: this waits for the abandoned transaction, which ran to its end.
        assert await store.transact(rows, readonly=True) == [(1,), (2,)]
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_statements_answer_in_order_with_errors_rolled_back(pg):
    from twisted.internet import reactor

    store = await PostgreSQLMetadataStore.open(pg.dsn, reactor, size=2)
    try:
        await store.transact(lambda txn: txn.execute("CREATE TABLE t (x integer PRIMARY KEY)"))

        async def many(txn):
            for i in range(200):
                await txn.execute("INSERT INTO t VALUES (?)", (i,))
            return await txn.execute("SELECT count(*), sum(x) FROM t")

        assert await store.transact(many) == [(200, sum(range(200)))]

        async def duplicate(txn):
            await txn.execute("INSERT INTO t VALUES (1000)")
            await txn.execute("INSERT INTO t VALUES (0)")

        with pytest.raises(psycopg2.IntegrityError):
            await store.transact(duplicate)
        big = "x" * (4 * 1024 * 1024)
        # A statement larger than the socket's buffer goes out in several writes.
        assert await store.transact(
            lambda txn: txn.execute("SELECT length(?)", (big,)), readonly=True
        ) == [(len(big),)]
        assert await store.transact(
            lambda txn: txn.execute("SELECT count(*) FROM t WHERE x = 1000"), readonly=True
        ) == [(0,)]
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_a_transaction_past_the_timeout_fails_unavailable_and_the_store_recovers(pg):
    from twisted.internet import reactor

    from ocireg.errors import UNAVAILABLE, RegistryError

    store = await PostgreSQLMetadataStore.open(pg.dsn, reactor, size=1, timeout=0.5)
    try:
        with pytest.raises(RegistryError) as raised:
            await store.transact(lambda txn: txn.execute("SELECT pg_sleep(5)"))
        assert raised.value.code == UNAVAILABLE

        async def answers() -> bool:
            try:
                return await store.transact(lambda txn: txn.execute("SELECT 1")) == [(1,)]
            except RegistryError:
                return False

        for _ in range(100):
            if await answers():
                break
            await deferLater(reactor, 0.1)
        else:
            raise AssertionError("the store did not reconnect within 10 s")
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_reconnections_that_get_no_answer_are_given_up_and_the_next_ones_succeed(pg):
    from twisted.internet import reactor

    proxy = TCPProxy(postgres_address()).start()
    silent: socket.socket | None = None
    held: list[socket.socket] = []
    store = await PostgreSQLMetadataStore.open(via(proxy, pg), reactor, size=1, timeout=20)
    try:
        proxy.down()
        # Where the database was, a server that takes connections and never says a word.
        silent = socket.socket()
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind(("127.0.0.1", proxy.port))
        silent.listen(8)
        silent.setblocking(False)
        deadline = reactor.seconds() + 10
        # One attempt of the pool's, one of the listener's.
        while len(held) < 2:
            assert reactor.seconds() < deadline, f"{len(held)} attempts to reconnect, not 2"
            try:
                held.append(silent.accept()[0])
            except BlockingIOError:
                await deferLater(reactor, 0.02)
        # The attempts it holds stay unanswered; the database is back beside them.
        silent.close()
        silent = None
        proxy.up()
        back = reactor.seconds()
        while True:
            try:
                if await store.transact(lambda txn: txn.execute("SELECT 1")) == [(1,)]:
                    break
            except RegistryError:
                pass
            assert reactor.seconds() - back < CONNECT_TIMEOUT + 5, "the store never reconnected"
            await deferLater(reactor, 0.1)
        while not store.catch_up():
            assert reactor.seconds() - back < CONNECT_TIMEOUT + 5, "it never listened again"
            await deferLater(reactor, 0.1)
    finally:
        await store.close()
        for connection in held:
            connection.close()
        if silent is not None:
            silent.close()
        proxy.stop()
