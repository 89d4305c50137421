"""Password checks (bcrypt) leave the reactor a CPU: fewer threads than CPUs, at a lower priority.

A flood of guesses held every CPU with bcrypt, and the reactor thread
waited for one with every pull in the process behind it (issue 13, attack
6 of benchmarks/hostile.py). The checks run in a pool of their own, at most
`auth_check_threads` at once (by default one fewer than the CPUs), in
threads whose nice value is CHECK_NICE above the process's. These tests
read what the kernel says of each thread: its nice value and the CPU time
it spent (/proc/<pid>/task/<tid>/stat and schedstat).
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults

from ocireg.auth.checkpool import CHECK_NICE, CheckPool, check_threads, usable_cpus
from ocireg.auth.interfaces import AuthenticationFailed, BasicCredentials
from ocireg.auth.setup import open_auth
from ocireg.config import Config, ConfigError
from tests.auth_helpers import basic
from tests.support import RegistryProcess

#: Costlier than the other tests' hashes, so that a check's CPU time stands out.
COST = 8
USERS = {f"user{i}": f"password-{i}" for i in range(6)}

linux_only = pytest.mark.skipif(not Path("/proc/self/task").is_dir(),
                                reason="reads per-thread state from /proc")


def _htpasswd(path: Path, cost: int = COST) -> Path:
    path.write_text("".join(
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(cost)).decode()}\n"
        for user, pw in USERS.items()
    ))
    return path


def _stat(pid: int, tid: int) -> list[str]:
    """The fields of a thread's stat after its name, so that field n of proc(5) is [n - 3]."""
    text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def nice_of(pid: int, tid: int) -> int:
    return int(_stat(pid, tid)[19 - 3])


def cpu_ns(pid: int) -> dict[int, int]:
    """Thread id -> nanoseconds it has run on a CPU."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            times[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            continue
    return times


def check_cpu_ns(count: int, cost: int = COST) -> int:
    """What `count` wrong-password checks at `cost` take of this thread's CPU."""
    hashed = bcrypt.hashpw(b"x", bcrypt.gensalt(cost))
    started = time.thread_time_ns()
    for _ in range(count):
        bcrypt.checkpw(b"y", hashed)
    return time.thread_time_ns() - started


def test_checks_run_one_fewer_than_the_cpus_at_once_at_least_one():
    assert check_threads(0, 1) == 1
    assert check_threads(0, 2) == 1
    assert check_threads(0, 8) == 7
    assert check_threads(3, 2) == 3
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)


@pytest.mark.parametrize("value", [-1, "two", 1.5, True])
def test_auth_check_threads_that_is_no_count_is_refused_at_start_up(value):
    with pytest.raises(ConfigError, match="'auth_check_threads' must be a whole number"):
        Config(auth_check_threads=value)


@linux_only
def test_a_check_pool_thread_lowers_its_own_priority_and_no_other():
    pool = CheckPool(2)
    pool.start()
    try:
        seen: list[int] = []
        done = threading.Event()

        def job() -> None:
            seen.append(nice_of(os.getpid(), threading.get_native_id()))
            done.set()

        pool.callInThread(job)
        assert done.wait(10)
    finally:
        pool.stop()
    mine = nice_of(os.getpid(), threading.get_native_id())
    assert seen == [min(19, mine + CHECK_NICE)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


@linux_only
@pytest_twisted.ensureDeferred
async def test_password_checks_run_at_most_n_at_once_in_low_priority_threads_of_their_own(
        tmp_path):
    config = Config(data_dir=str(tmp_path), auth_htpasswd=str(_htpasswd(tmp_path / "pw")),
                    auth_check_threads=2)
    setup = await open_auth(config, reactor)
    try:
        checks = [p for p in setup.pools if isinstance(p, CheckPool)]
        assert len(checks) == 1 and checks[0] is not reactor.getThreadPool()
        pool = checks[0]
        before = cpu_ns(os.getpid())
        # Six users from six addresses: six checks, none shared, none throttled.
        logins = [Deferred.fromCoroutine(setup.authoriser.authenticate(
            BasicCredentials(user, pw), f"192.0.2.{i}")) for i, (user, pw) in
            enumerate(USERS.items())]
        principals = await gatherResults(logins)
        after = cpu_ns(os.getpid())
        assert [p.user for p in principals] == list(USERS)
        assert len(pool.threads) == 2
        tids = {t.native_id for t in pool.threads}
        mine = nice_of(os.getpid(), threading.get_native_id())
        assert {nice_of(os.getpid(), tid) for tid in tids} == {min(19, mine + CHECK_NICE)}
        ran = sum(after.get(tid, 0) - before.get(tid, 0) for tid in tids)
        # bcrypt's CPU time is spent in those threads (not the reactor's, not the files').
        assert ran >= check_cpu_ns(len(USERS)) // 2
        others = {tid: after[tid] - before.get(tid, 0) for tid in after if tid not in tids}
        assert all(spent < ran for spent in others.values())
    finally:
        setup.stop()


@pytest_twisted.ensureDeferred
async def test_by_default_checks_run_on_one_fewer_than_the_cpus(tmp_path):
    config = Config(data_dir=str(tmp_path), auth_htpasswd=str(_htpasswd(tmp_path / "pw", 4)))
    setup = await open_auth(config, reactor)
    try:
        pools = [p for p in setup.pools if isinstance(p, CheckPool)]
        assert [p.max for p in pools] == [max(1, usable_cpus() - 1)]
        with pytest.raises(AuthenticationFailed):
            await setup.authoriser.authenticate(BasicCredentials("user0", "wrong"), "192.0.2.1")
    finally:
        setup.stop()


@pytest_twisted.ensureDeferred
async def test_the_htpasswd_file_is_read_again_while_checks_are_queued(tmp_path):
    path = _htpasswd(tmp_path / "pw", 4)
    slow = bcrypt.hashpw(b"slow", bcrypt.gensalt(13)).decode()
    path.write_text(path.read_text() + f"slow0:{slow}\nslow1:{slow}\n")
    config = Config(data_dir=str(tmp_path), auth_htpasswd=str(path), auth_check_threads=1)
    setup = await open_auth(config, reactor)
    try:
        queued = [Deferred.fromCoroutine(setup.authoriser.authenticate(
            BasicCredentials(f"slow{i}", "wrong"), f"192.0.2.{i}")) for i in range(2)]
        assert setup.watcher is not None
        # The files' thread is not the checks': the reload does not wait behind them.
        assert await setup.watcher.reload() == "8 users"
        assert not any(d.called for d in queued)
        for d in queued:
            with pytest.raises(AuthenticationFailed):
                await d
    finally:
        setup.stop()


def _login(server: RegistryProcess, user: str, password: str) -> int:
    request = urllib.request.Request(f"{server.url}/token?service=ocireg",
                                     headers={"Authorization": basic(user, password)})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


@linux_only
def test_the_servers_password_checks_run_in_low_priority_threads_not_the_reactors(tmp_path):
    htpasswd = _htpasswd(tmp_path / "htpasswd", 10)
    config = tmp_path / "ocireg.toml"
    config.write_text(f'auth_htpasswd = "{htpasswd}"\n')
    server = RegistryProcess(tmp_path / "data").start("--config", str(config))
    try:
        pid = server.process.pid
        before = cpu_ns(pid)
        statuses = [_login(server, user, pw) for user, pw in USERS.items()]
        statuses.append(_login(server, "user0", "wrong"))
        after = cpu_ns(pid)
        niced = {tid for tid in after if nice_of(pid, tid) == min(19, nice_of(pid, pid)
                                                                  + CHECK_NICE)}
        nice = {tid: nice_of(pid, tid) for tid in after}
    finally:
        server.stop()
    assert statuses == [200] * len(USERS) + [401]
    assert nice[pid] == os.getpriority(os.PRIO_PROCESS, 0)
    assert 1 <= len(niced) <= max(1, usable_cpus() - 1)
    ran = {tid: after[tid] - before.get(tid, 0) for tid in after}
    # Seven checks at cost 10 ran there; the reactor only answered the requests.
    spent = sum(ran[tid] for tid in niced)
    assert spent >= check_cpu_ns(len(statuses), 10) // 2
    assert ran[pid] < spent
