"""Hostile clients against ocireg with authentication on: what a well-behaved client sees meanwhile.

Starts ocireg (users in an htpasswd file of bcrypt hashes, the token service
on) on a free 127.0.0.1 port, pushes a small image, then runs a well-behaved
client in a process of its own, from 127.0.0.1: it pulls the image's
manifest and blob in a loop (with a token) and logs in with its password once
a second. It runs first with no attack, then during each attack of issue 13
items 1-7 in turn (and 6b: item 6's password checks without its burst of
refusals), each from other loopback addresses (127.0.0.2 and up), each
bounded in count and in time. Per phase it prints the client's pull latency
(p50, p99, max: with few pulls in a short phase the p99 is its slowest
pull), its failed pulls, its logins (refused, slowest), the server's peak
RSS during the phase and its RSS a second after, what the attack's requests
were answered, and where the CPU went: the reactor thread's CPU time and its
time runnable but waiting for a CPU (what every request waits with it), the
server's other threads' (bcrypt's, mostly), the attack's own (on the same
machine, unlike a real attacker's) and the whole machine's. A machine busy
with other work shows in the last: compare runs only on an idle one, or
back to back (--source runs another tree, such as a checkout of main).

    python benchmarks/hostile.py [--quick] [--seconds 10] [--only N ...] [--json FILE]
                                 [--source TREE]

Loopback only. Every loop is bounded; it stops the server and every client
it starts.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import json
import multiprocessing
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlencode

import bcrypt

MiB = 1 << 20
HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
IO_TIMEOUT = 15.0
RSS_INTERVAL = 0.02
#: The cost of the users' hashes: htpasswd -B's default is 5; 10 is a common choice.
BCRYPT_COST = 10
PASSWORDS = {"alice": "alice-correct-horse", "mallory": "mallory-pw"}
REPOSITORY = "team/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: The well-behaved client's pace: a pull (manifest + blob) at most every this many seconds.
PULL_EVERY = 0.02
LOGIN_EVERY = 1.0
MAX_PULLS = 100_000


# --- the server ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def attacker_addresses(count: int, first: int) -> list[str]:
    """Loopback source addresses (127.0.0.2 and up) other than the well-behaved client's.

    Each attack has its own (`first` on), so one's failed logins do not throttle another.
    """
    return [f"127.0.{n // 250}.{n % 250 + 2}" for n in range(first, first + count)]


def write_config(workdir: Path, port: int) -> Path:
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text("".join(
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()}\n"
        for user, pw in PASSWORDS.items()
    ))
    config = workdir / "ocireg.toml"
    config.write_text(
        f'listen = ["tcp:{port}:interface={HOST}"]\n'
        f'data_dir = "{workdir / "data"}"\n'
        f'auth_htpasswd = "{htpasswd}"\n'
        # One access-log line per attack request would measure the log, not the server.
        'log_level = "warn"\n'
        # The well-behaved client's first token lasts the whole run: see well_behaved.
        "auth_token_ttl = 3600\n"
        "[[auth_rules]]\n"
        'users = ["alice"]\n'
        f'repositories = ["{REPOSITORY.split("/")[0]}/**"]\n'
        'actions = ["pull", "push"]\n'
    )
    return config


@contextlib.contextmanager
def running_server(workdir: Path, source: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    config = write_config(workdir, port)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(source), env.get("PYTHONPATH", ""))
                                        if p)
    log = workdir / "ocireg.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "twisted", "ocireg", "--config", str(config)],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"ocireg did not start:\n{tail}")
            with contextlib.suppress(OSError):
                if request(port, "GET", "/v2/")[0] == 401:
                    break
            time.sleep(0.1)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)


def status_mib(pid: int, key: str) -> float | None:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return None


def thread_times(pid: int) -> dict[int, tuple[float, float]]:
    """Thread id -> (ms on a CPU, ms runnable but waiting for one), from schedstat."""
    times = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                ran, waited = (task / "schedstat").read_text().split()[:2]
                times[int(task.name)] = (int(ran) / 1e6, int(waited) / 1e6)
    return times


def busy_cpu_ms() -> float:
    """CPU time all the machine's CPUs spent not idle since boot (ms), from /proc/stat."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]
        return (sum(fields[:8]) - idle) * 1000 / os.sysconf("SC_CLK_TCK")
    return 0.0


class SchedulerTimes:
    """What the server's threads did during a phase: the reactor's (the main thread's) CPU
    time and its time runnable but waiting for a CPU, and the other threads' CPU time; and
    beside it the CPU time of this process's attack threads and of the whole machine.

    The reactor waiting for a CPU is latency every request in the process shares; the
    attack's own CPU competes with it only because the attacker runs on the same machine.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.reactor_ms = self.reactor_wait_ms = self.threads_ms = 0.0
        self.attack_ms = self.machine_ms = 0.0

    def __enter__(self) -> SchedulerTimes:
        self._before = thread_times(self.pid)
        self._attack = resource.getrusage(resource.RUSAGE_SELF)
        self._machine = busy_cpu_ms()
        return self

    def __exit__(self, *exc: object) -> None:
        after = thread_times(self.pid)
        attack = resource.getrusage(resource.RUSAGE_SELF)
        self.attack_ms = 1000 * (attack.ru_utime + attack.ru_stime
                                 - self._attack.ru_utime - self._attack.ru_stime)
        self.machine_ms = busy_cpu_ms() - self._machine
        for tid, (ran, waited) in after.items():
            ran_before, waited_before = self._before.get(tid, (0.0, 0.0))
            if tid == self.pid:
                self.reactor_ms = ran - ran_before
                self.reactor_wait_ms = waited - waited_before
            else:
                self.threads_ms += ran - ran_before


class RssSampler:
    """The server's peak VmRSS while a phase runs (VmHWM too, where it can be reset)."""

    def __init__(self, pid: int, limit: float) -> None:
        self.pid = pid
        self.peak = 0.0
        self._limit = limit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            self._hwm = True
        except OSError:
            self._hwm = False

    def _run(self) -> None:
        for _ in range(int(self._limit / RSS_INTERVAL)):
            self.peak = max(self.peak, status_mib(self.pid, "VmRSS") or 0.0)
            if self._stop.wait(RSS_INTERVAL):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._hwm:
            self.peak = max(self.peak, status_mib(self.pid, "VmHWM") or 0.0)


# --- HTTP ------------------------------------------------------------------------


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, source: str = HOST,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes, dict[str, str]]:
    """One request (on `conn` if given, else a connection of its own from `source`)."""
    own = conn is None
    if conn is None:
        conn = http.client.HTTPConnection(HOST, port, timeout=IO_TIMEOUT,
                                          source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, data, {k.lower(): v for k, v in response.getheaders()}
    finally:
        if own:
            conn.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def login(port: int, user: str, password: str, scope: str,
          source: str = HOST) -> tuple[int, str | None]:
    status, body, _ = request(port, "GET", f"/token?service=ocireg&scope={quote(scope)}",
                              headers=basic(user, password), source=source)
    return status, json.loads(body)["token"] if status == 200 else None


def seed(port: int) -> tuple[str, str]:
    """Push a small image as alice; the manifest's and the layer's digests."""
    status, token = login(port, "alice", PASSWORDS["alice"], f"repository:{REPOSITORY}:pull,push")
    if token is None:
        raise SystemExit(f"alice cannot log in ({status})")
    auth = {"Authorization": f"Bearer {token}"}
    layer, config = os.urandom(4096), json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    digests = {}
    for data in (layer, config):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, body, _ = request(port, "POST", f"/v2/{REPOSITORY}/blobs/uploads/?digest={digest}",
                                  data, {**auth, "Content-Type": "application/octet-stream"})
        if status != 201:
            raise SystemExit(f"pushing a blob: {status} {body[:200]!r}")
        digests[data] = (digest, len(data))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digests[config][0], "size": digests[config][1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digests[layer][0], "size": digests[layer][1]}],
    }).encode()
    status, body, headers = request(port, "PUT", f"/v2/{REPOSITORY}/manifests/latest", manifest,
                                    {**auth, "Content-Type": OCI_MANIFEST})
    if status != 201:
        raise SystemExit(f"pushing the manifest: {status} {body[:200]!r}")
    return headers["docker-content-digest"], digests[layer][0]


# --- the well-behaved client -------------------------------------------------------


def well_behaved(port: int, layer: str, token: str, seconds: float, stop, out) -> None:
    """Pull the manifest and the layer in a loop, log in every LOGIN_EVERY s; results to `out`.

    It starts with `token`, and pulls with the newest it got: a refused login
    shows in the logins, and in the pulls only once the token it has expires.
    """
    latencies: list[float] = []
    failed: Counter[str] = Counter()
    logins: list[tuple[int, float]] = []
    conn: http.client.HTTPConnection | None = None
    deadline = time.monotonic() + seconds
    next_login = time.monotonic()
    scope = f"repository:{REPOSITORY}:pull"
    for _ in range(MAX_PULLS):
        now = time.monotonic()
        if stop.is_set() or now > deadline:
            break
        if now >= next_login:
            next_login = now + LOGIN_EVERY
            started = time.perf_counter()
            try:
                status, new = login(port, "alice", PASSWORDS["alice"], scope)
            except (OSError, http.client.HTTPException):
                status, new = 0, None
            logins.append((status, time.perf_counter() - started))
            token = new or token
        for path, accept in ((f"/v2/{REPOSITORY}/manifests/latest", OCI_MANIFEST),
                             (f"/v2/{REPOSITORY}/blobs/{layer}", "*/*")):
            if conn is None:
                conn = http.client.HTTPConnection(HOST, port, timeout=IO_TIMEOUT)
            started = time.perf_counter()
            try:
                status, _, _ = request(port, "GET", path, conn=conn, headers={
                    "Authorization": f"Bearer {token}", "Accept": accept})
            except (OSError, http.client.HTTPException) as e:
                failed[type(e).__name__] += 1
                conn.close()
                conn = None
                continue
            if status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                failed[str(status)] += 1
        time.sleep(PULL_EVERY)
    if conn is not None:
        conn.close()
    out.put({"latencies": latencies, "failed": dict(failed), "logins": logins})


# --- the attacks ---------------------------------------------------------------------


def _bounded(jobs: list[Callable[[], str]], threads: int, deadline: float) -> dict[str, int]:
    """Run `jobs` (each answering a status word) on `threads` threads until `deadline`."""
    answers: Counter[str] = Counter()

    def run(job: Callable[[], str]) -> None:
        if time.monotonic() > deadline:
            answers["not sent (time up)"] += 1
            return
        try:
            answers[job()] += 1
        except (OSError, http.client.HTTPException) as e:
            answers[type(e).__name__] += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, jobs))
    return dict(answers)


def _post_form(port: int, source: str, form: bytes) -> str:
    return str(request(port, "POST", "/token", form,
                       {"Content-Type": "application/x-www-form-urlencoded"}, source)[0])


def long_user_names(port: int, seconds: float, scale: float) -> dict:
    """Item 1: failed logins at /token with 3.5 MB user names, 5 from each of 30 addresses."""
    name = "u" * int(3.5 * MiB)
    form = urlencode({"grant_type": "password", "username": name, "password": "x",
                      "service": "ocireg"}).encode()
    jobs = [lambda a=a: _post_form(port, a, form)
            for a in attacker_addresses(max(1, int(30 * scale)), 0) for _ in range(5)]
    return _bounded(jobs, 10, time.monotonic() + seconds)


def huge_scopes(port: int, seconds: float, scale: float) -> dict:
    """Item 2: anonymous token requests of 110,000 scopes each, two clients looping."""
    scopes = " ".join(f"repository:r{i}:pull" for i in range(110_000))
    form = urlencode({"grant_type": "password", "username": "", "password": "",
                      "service": "ocireg", "scope": scopes}).encode()
    deadline = time.monotonic() + seconds
    jobs = [lambda a=a: _post_form(port, a, form)
            for _ in range(max(1, int(25 * scale))) for a in attacker_addresses(2, 40)]
    return _bounded(jobs, 2, deadline)


def manifest_bodies(port: int, seconds: float, scale: float) -> dict:
    """Item 3: 100 anonymous 4 MiB manifest PUTs at once (rounds of them, at most 3)."""
    body = b" " * (4 * MiB)
    deadline = time.monotonic() + seconds
    count = max(1, int(100 * scale))
    addresses = attacker_addresses(10, 50)
    answers: Counter[str] = Counter()
    for _ in range(3):
        if time.monotonic() > deadline:
            break
        jobs = [lambda i=i: str(request(
            port, "PUT", f"/v2/{REPOSITORY}/manifests/evil{i}", body,
            {"Content-Type": OCI_MANIFEST}, addresses[i % len(addresses)])[0])
            for i in range(count)]
        answers.update(_bounded(jobs, count, deadline))
    return dict(answers)


def connections(port: int, seconds: float, scale: float) -> dict:
    """Item 4: many idle connections, and connections trickling a header byte a second."""
    idle_count, trickle_count = max(1, int(400 * scale)), max(1, int(100 * scale))
    addresses = attacker_addresses(10, 60)
    opened: list[socket.socket] = []
    trickling: list[socket.socket] = []
    refused = 0
    deadline = time.monotonic() + seconds
    try:
        for i in range(idle_count + trickle_count):
            if time.monotonic() > deadline:
                break
            try:
                sock = socket.create_connection((HOST, port), timeout=2,
                                                source_address=(addresses[i % 10], 0))
            except OSError:
                refused += 1
                continue
            (trickling if i >= idle_count else opened).append(sock)
            if i >= idle_count:
                sock.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode())
        closed: set[socket.socket] = set()
        for _ in range(int(seconds) + 1):
            if time.monotonic() > deadline:
                break
            for sock in trickling:
                if sock in closed:
                    continue
                try:
                    sock.send(b"a")
                except OSError:
                    closed.add(sock)
            time.sleep(1.0)
        for sock in opened + trickling:
            if sock in closed:
                continue
            sock.setblocking(False)
            try:
                if sock.recv(1) == b"":
                    closed.add(sock)
            except BlockingIOError:
                pass
            except OSError:
                closed.add(sock)
        return {"opened": len(opened) + len(trickling), "not accepted": refused,
                "closed by the server": len(closed)}
    finally:
        for sock in opened + trickling:
            sock.close()


def upload_sessions(port: int, seconds: float, scale: float) -> dict:
    """Item 5: a user who may push opens 2,000 upload sessions, 8 at a time."""
    status, token = login(port, "mallory", PASSWORDS["mallory"], "repository:mallory/x:pull,push",
                          attacker_addresses(1, 70)[0])
    if token is None:
        return {f"mallory's login {status}": 1}
    auth = {"Authorization": f"Bearer {token}", "Content-Length": "0"}
    jobs = [lambda: str(request(port, "POST", "/v2/mallory/x/blobs/uploads/", b"", auth,
                                attacker_addresses(1, 70)[0])[0])
            for _ in range(max(1, int(2000 * scale)))]
    return _bounded(jobs, 8, time.monotonic() + seconds)


def password_guesses(port: int, seconds: float, scale: float) -> dict:
    """Item 6: 150 wrong passwords for alice at once, from one address."""
    source = attacker_addresses(1, 80)[0]
    jobs = [lambda i=i: str(login(port, "alice", f"guess-{i}", "", source)[0])
            for i in range(max(1, int(150 * scale)))]
    return _bounded(jobs, max(1, int(150 * scale)), time.monotonic() + seconds)


def steady_guesses(port: int, seconds: float, scale: float) -> dict:
    """Item 6, bcrypt's part alone: wrong passwords 8 at a time for the whole phase, each for
    another user, from 40 addresses in turn, so that few are refused unchecked and bcrypt
    runs all the time (attack 6 is over in a second, and most of it is answered 429)."""
    addresses = attacker_addresses(40, 100)
    jobs = [lambda i=i: str(login(port, f"user{i}", "wrong", "", addresses[i % 40])[0])
            for i in range(max(1, int(2000 * scale)))]
    answers = _bounded(jobs, 8, time.monotonic() + seconds)
    # It guesses until the time is up: what was left is no answer.
    answers.pop("not sent (time up)", None)
    return answers


def lock_out(port: int, seconds: float, scale: float) -> dict:
    """Item 7: wrong passwords for alice from 5 addresses, and for many users from hers."""
    deadline = time.monotonic() + seconds
    jobs = [lambda a=a, i=i: "alice, elsewhere: " + str(login(port, "alice", f"no-{i}", "", a)[0])
            for a in attacker_addresses(5, 90) for i in range(10)]
    # Someone behind the well-behaved client's own address (a shared NAT) failing as others.
    jobs += [lambda i=i: "others, same address: " + str(login(port, f"user{i}", "no", "")[0])
             for i in range(max(1, int(30 * scale)))]
    return _bounded(jobs, 5, deadline)


ATTACKS: dict[str, Callable[[int, float, float], dict]] = {
    "1 long user names": long_user_names,
    "2 huge scope lists": huge_scopes,
    "3 anonymous 4 MiB manifests": manifest_bodies,
    "4 connections, trickling": connections,
    "5 upload sessions": upload_sessions,
    "6 parallel guesses": password_guesses,
    "6b steady guesses": steady_guesses,
    "7 lock-out": lock_out,
}


# --- phases ------------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def run_phase(proc: subprocess.Popen, port: int, layer: str, token: str, name: str,
              attack: Callable[[int, float, float], dict] | None, seconds: float,
              scale: float) -> dict:
    context = multiprocessing.get_context("fork")
    stop, out = context.Event(), context.Queue()
    # The client outlives the attack by a little, so its last pulls see the server after it.
    client = context.Process(target=well_behaved,
                             args=(port, layer, token, seconds * 3 + 30, stop, out),
                             daemon=True)
    with RssSampler(proc.pid, seconds * 4 + 60) as sampler, SchedulerTimes(proc.pid) as cpu:
        client.start()
        time.sleep(0.5)
        started = time.monotonic()
        answers = attack(port, seconds, scale) if attack else (time.sleep(seconds) or {})
        took = time.monotonic() - started
        time.sleep(0.5)
        stop.set()
        try:
            result = out.get(timeout=seconds + 30)
        finally:
            client.join(10)
            if client.is_alive():
                client.kill()
                client.join(10)
    time.sleep(1.0)
    latencies = [s * 1000 for s in result["latencies"]]
    logins = result["logins"]
    return {
        "phase": name,
        "attack_seconds": round(took, 1),
        "pulls": len(latencies),
        "p50_ms": quantile(latencies, 0.5),
        "p99_ms": quantile(latencies, 0.99),
        "max_ms": max(latencies, default=None),
        "failed_pulls": result["failed"],
        "logins": len(logins),
        "logins_refused": sum(1 for status, _ in logins if status != 200),
        "slowest_login_s": max((s for _, s in logins), default=None),
        "peak_rss_mib": round(sampler.peak, 1),
        "reactor_cpu_ms": round(cpu.reactor_ms),
        "reactor_wait_ms": round(cpu.reactor_wait_ms),
        "threads_cpu_ms": round(cpu.threads_ms),
        "attack_cpu_ms": round(cpu.attack_ms),
        "machine_cpu_ms": round(cpu.machine_ms),
        "rss_after_mib": status_mib(proc.pid, "VmRSS"),
        "attack_answers": answers,
        "server_alive": proc.poll() is None,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(title: str, rows: list[dict]) -> None:
    print(title)
    header = (f"{'phase':30} {'pulls':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
              f"{'failed':>6} {'logins':>6} {'refused':>7} {'slowest':>8} {'peak MiB':>9} "
              f"{'after':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        slowest = "-" if r["slowest_login_s"] is None else f"{r['slowest_login_s']:.2f}s"
        print(f"{r['phase']:30} {r['pulls']:6d} {_ms(r['p50_ms']):>8} {_ms(r['p99_ms']):>8} "
              f"{_ms(r['max_ms']):>8} {sum(r['failed_pulls'].values()):6d} {r['logins']:6d} "
              f"{r['logins_refused']:7d} {slowest:>8} {r['peak_rss_mib']:9.1f} "
              f"{_ms(r['rss_after_mib']):>7}")
    print()
    print("CPU time during each phase (ms): the server's reactor thread, its time runnable but "
          "waiting for a CPU, the server's other threads, the attack (this process), all CPUs")
    for r in rows:
        print(f"{r['phase']:30} reactor {r['reactor_cpu_ms']:6d}, waited "
              f"{r['reactor_wait_ms']:5d}; threads {r['threads_cpu_ms']:6d}; attack "
              f"{r['attack_cpu_ms']:6d}; machine {r['machine_cpu_ms']:6d}")
    print()
    for r in rows:
        if r["attack_answers"] or not r["server_alive"]:
            alive = "" if r["server_alive"] else "  SERVER DIED"
            print(f"{r['phase']}: {json.dumps(r['attack_answers'])} in {r['attack_seconds']} s"
                  f"{alive}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float,
                        help="longest each attack runs (default 10; --quick: 4)")
    parser.add_argument("--quick", action="store_true",
                        help="shorter phases and a fifth of each attack's requests")
    parser.add_argument("--only", action="append", default=[], metavar="NUMBER",
                        help="run only this attack (1-7 or 6b; repeatable), after the baseline")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--tmpdir", type=Path, help="where the data dir goes")
    parser.add_argument("--source", type=Path, default=REPO_ROOT,
                        help="the ocireg source tree to run (default: this one), to compare two")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (4.0 if args.quick else 10.0)
    args.scale = 0.2 if args.quick else 1.0
    if args.seconds <= 0 or args.seconds > 600:
        parser.error("--seconds must be in (0, 600]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    chosen = {name: attack for name, attack in ATTACKS.items()
              if not args.only or name.split()[0] in args.only}
    rows = []
    with tempfile.TemporaryDirectory(prefix="ocireg-hostile-", dir=args.tmpdir) as tmp:
        workdir = Path(tmp)
        with running_server(workdir, args.source.resolve()) as (proc, port):
            _, layer = seed(port)
            status, token = login(port, "alice", PASSWORDS["alice"],
                                  f"repository:{REPOSITORY}:pull")
            if token is None:
                raise SystemExit(f"alice cannot log in ({status})")
            rows.append(run_phase(proc, port, layer, token, "0 no attack", None, args.seconds,
                                  args.scale))
            for name, attack in chosen.items():
                if proc.poll() is not None:
                    break
                rows.append(run_phase(proc, port, layer, token, name, attack, args.seconds,
                                      args.scale))
    title = (f"ocireg ({args.source}) under attack: {args.seconds:g} s per attack, "
             f"scale {args.scale:g}, "
             f"bcrypt cost {BCRYPT_COST}, {os.cpu_count()} CPUs, Python "
             f"{platform.python_version()}")
    print_table(title, rows)
    if args.json:
        args.json.write_text(json.dumps({"title": title, "phases": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
