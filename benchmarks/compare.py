"""ocireg side by side with CNCF distribution (Debian's docker-registry 2.8.2).

Starts ocireg on SQLite, ocireg on PostgreSQL (a fresh database, dropped
afterwards) and distribution, each on its own free 127.0.0.1 port with an
empty data directory, then runs every figure against each of them in turn
(A B C A B C …, the order rotated at each repeat), and prints the medians,
the ratio of each ocireg to distribution measured in the same run, the
server's CPU per GiB or per request, and its peak RSS.

    python benchmarks/compare.py [--quick] [--repeat N] [--size-mib N]
        [--only sqlite,pg,distribution] [--dsn URL] [--json FILE]

Needs `docker-registry` and `wrk` (`apt-get install -y docker-registry wrk`)
and, for the PostgreSQL target, a server at --dsn (default
postgresql://postgres@127.0.0.1:5432/postgres; `--only sqlite,distribution`
skips it). Both registries run without an access log (ocireg at log level
warn), so neither pays for one. --quick (1 GiB figures at 64 MiB, 2-second
load figures, one repeat, no scaling figures) runs in under a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from pathlib import Path

import psycopg2
from metadata import Database
from throughput import (
    HOST,
    IO_TIMEOUT,
    Blob,
    MiB,
    Sample,
    free_port,
    make_blob,
    measure,
    ocireg_command,
    reference_command,
    running_server,
    upload_chunked,
    upload_monolithic,
)
from throughput import download as download_blob

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DISTRIBUTION = "distribution"
#: Seconds wrk may overrun its duration before it counts as hung.
WRK_GRACE = 30.0


@dataclass
class Target:
    name: str
    port: int
    pid: int
    data_dir: Path
    #: How to reach its metadata for populating the scaling figures.
    sqlite_path: Path | None = None
    dsn: str | None = None


@dataclass
class Figure:
    """One row of the table: a measurement that each target runs once per repeat."""

    name: str
    unit: str
    #: True when a bigger value is better (MiB/s, req/s); False for seconds.
    higher_is_better: bool
    #: The target ratio to distribution, and whether p99 must not exceed distribution's.
    target: float | None
    run: Callable[[Target, int], Result]
    full_only: bool = False


@dataclass
class Result:
    value: float
    p99_ms: float | None = None
    requests: int = 0
    gib: float = 0.0


@dataclass
class Row:
    samples: dict[str, list[tuple[Result, Sample]]] = field(default_factory=dict)


# --- HTTP helpers -----------------------------------------------------------------


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def call(conn: http.client.HTTPConnection, method: str, target: str, body: bytes = b"",
         headers: dict[str, str] | None = None, expect: int | None = None,
         ) -> http.client.HTTPResponse:
    conn.request(method, target, body=body if method not in ("GET", "HEAD") else None,
                 headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    if expect is not None and response.status != expect:
        raise RuntimeError(f"{method} {target}: expected {expect}, got {response.status}: "
                           f"{data[:300]!r}")
    return response


def push_blob(conn: http.client.HTTPConnection, repo: str, data: bytes, check: bool) -> str:
    """A client's blob push: HEAD (when `check`), POST, PUT ?digest= with the body."""
    digest = digest_of(data)
    if check:
        call(conn, "HEAD", f"/v2/{repo}/blobs/{digest}", expect=HTTPStatus.NOT_FOUND)
    response = call(conn, "POST", f"/v2/{repo}/blobs/uploads/", expect=HTTPStatus.ACCEPTED)
    location = response.getheader("Location") or ""
    if location.startswith("http"):
        location = "/" + location.split("/", 3)[3]
    separator = "&" if "?" in location else "?"
    call(conn, "PUT", f"{location}{separator}digest={digest}", data,
         {"Content-Type": "application/octet-stream"}, expect=HTTPStatus.CREATED)
    return digest


def manifest_of(config: bytes, layers: list[bytes]) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": digest_of(x), "size": len(x)}
                   for x in layers],
    }).encode()


def push_image(conn: http.client.HTTPConnection, repo: str, tag: str, layers: list[bytes],
               check: bool = True) -> bytes:
    """Push `layers`, a config and a manifest under `tag`; the manifest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "repo": repo,
                         "tag": tag}).encode()
    for data in (*layers, config):
        push_blob(conn, repo, data, check)
    manifest = manifest_of(config, layers)
    call(conn, "PUT", f"/v2/{repo}/manifests/{tag}", manifest,
         {"Content-Type": OCI_MANIFEST}, expect=HTTPStatus.CREATED)
    return manifest


def connect(target: Target) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(HOST, target.port, timeout=IO_TIMEOUT)


# --- wrk ----------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk(target: Target, path: str, seconds: float, connections: int, script: Path | None,
        headers: dict[str, str] | None = None) -> Result:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency",
               "--timeout", "10s"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(f"http://{HOST}:{target.port}{path}")
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         timeout=seconds + WRK_GRACE).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad or "Socket errors" in out:
        raise RuntimeError(f"wrk against {target.name} {path}:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return Result(rate, float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else None, total)


# --- the figures -----------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.blob: Blob = make_blob(workdir / "blob.bin", args.size_mib * MiB)
        self.seconds = 2.0 if args.quick else 10.0
        self.base_layer = os.urandom(4096)

    # 1 GiB blobs

    def mono_push(self, target: Target, run: int) -> Result:
        with contextlib.closing(connect(target)) as conn:
            upload_monolithic(conn, f"bench/mono{run}", self.blob)
        return Result(0.0, gib=self.blob.size / (1 << 30))

    def chunked_push(self, target: Target, run: int) -> Result:
        with contextlib.closing(connect(target)) as conn:
            upload_chunked(conn, f"bench/chunked{run}", self.blob)
        return Result(0.0, gib=self.blob.size / (1 << 30))

    def pull(self, target: Target, run: int) -> Result:
        with contextlib.closing(connect(target)) as conn:
            download_blob(conn, f"bench/chunked{run}", self.blob)
        return Result(0.0, gib=self.blob.size / (1 << 30))

    def parallel_push(self, target: Target, run: int) -> Result:
        errors: list[BaseException] = []

        def one(i: int) -> None:
            try:
                with contextlib.closing(connect(target)) as conn:
                    upload_monolithic(conn, f"bench/par{run}/{i}", self.blob)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(IO_TIMEOUT * 8)
        if errors:
            raise errors[0]
        return Result(0.0, gib=8 * self.blob.size / (1 << 30))

    # Metadata under load

    def setup_read_targets(self, target: Target) -> None:
        with contextlib.closing(connect(target)) as conn:
            push_image(conn, "bench/app", "latest", [self.base_layer])

    def manifest_get(self, target: Target, run: int) -> Result:
        return wrk(target, "/v2/bench/app/manifests/latest", self.seconds, 64, None,
                   {"Accept": OCI_MANIFEST})

    def blob_head(self, target: Target, run: int) -> Result:
        # wrk waits for the body a HEAD answer announces: our own client, in its own process.
        out = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("loadclient.py")),
             "--port", str(target.port), "--method", "HEAD", "--connections", "64",
             "--seconds", f"{self.seconds:g}",
             "--path", f"/v2/bench/app/blobs/{digest_of(self.base_layer)}"],
            capture_output=True, text=True, check=False, timeout=self.seconds + WRK_GRACE,
        )
        if out.returncode:
            raise RuntimeError(f"load client against {target.name}: {out.stderr[-2000:]}")
        found = json.loads(out.stdout)
        return Result(found["rate"], found["p99_ms"], found["requests"])

    # Pushes of small things

    def fifty_layers(self, target: Target, run: int) -> Result:
        layers = [os.urandom(64 * 1024) for _ in range(50)]
        with contextlib.closing(connect(target)) as conn:
            started = time.perf_counter()
            push_image(conn, f"bench/fifty{run}", "v1", layers)
            seconds = time.perf_counter() - started
        return Result(seconds, requests=3 * 51 + 1)

    def concurrent_pushes(self, target: Target, run: int) -> Result:
        per_client = 3 if self.args.quick else 8
        errors: list[BaseException] = []

        def client(i: int) -> None:
            try:
                with contextlib.closing(connect(target)) as conn:
                    for k in range(per_client):
                        push_image(conn, f"bench/crowd{run}/c{i}", f"v{k}", [os.urandom(4096)])
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(IO_TIMEOUT)
        seconds = time.perf_counter() - started
        if errors:
            raise errors[0]
        images = 16 * per_client
        return Result(images / seconds, requests=images * 7)

    def tag_puts(self, target: Target, run: int) -> Result:
        count = 200 if self.args.quick else 1000
        repo = f"bench/tags{run}"
        with contextlib.closing(connect(target)) as conn:
            manifest = push_image(conn, repo, "base", [os.urandom(4096)])
            started = time.perf_counter()
            for i in range(count):
                call(conn, "PUT", f"/v2/{repo}/manifests/t{i}", manifest,
                     {"Content-Type": OCI_MANIFEST}, expect=HTTPStatus.CREATED)
            seconds = time.perf_counter() - started
        return Result(count / seconds, requests=count)

    def figures(self) -> list[Figure]:
        size = f"{self.args.size_mib} MiB"
        return [
            Figure(f"monolithic push {size}", "MiB/s", True, 2.0, self.mono_push),
            Figure(f"chunked push {size} (16 MiB PATCHes)", "MiB/s", True, 2.0,
                   self.chunked_push),
            Figure(f"blob pull {size}", "MiB/s", True, 1.0, self.pull),
            Figure(f"8 concurrent pushes {size}", "MiB/s", True, None, self.parallel_push,
                   full_only=True),
            Figure("manifest GET, 64 connections", "req/s", True, 3.0, self.manifest_get),
            Figure("blob HEAD, 64 connections (Python client)", "req/s", True, 3.0, self.blob_head),
            Figure("image push, 50 x 64 KiB layers", "s", False, 1.5, self.fifty_layers),
            Figure("16 clients pushing small images", "images/s", True, 1.5,
                   self.concurrent_pushes),
            Figure(f"{200 if self.args.quick else 1000} manifest PUTs by tag", "PUT/s", True,
                   1.5, self.tag_puts),
        ]


def timed(target: Target, figure: Figure, run: int) -> tuple[Result, Sample]:
    holder: list[Result] = []
    sample = measure(target.pid, 0, lambda: holder.append(figure.run(target, run)))
    result = holder[0]
    if figure.unit == "MiB/s":
        result.value = result.gib * 1024 / sample.seconds
    return result, sample


# --- scaling: many tags, many repositories -------------------------------------------


def populate_ocireg(target: Target, repo: str, tags: int, repositories: int) -> None:
    """Add what `tags` tag pushes and `repositories` one-tag pushes would have recorded.

    Written straight into the metadata store, in the rows a push makes: one
    version per tag write, its tag row, and for each new repository version 0,
    version 1 holding the manifest, its blobs and tag `latest`, and its
    distribution. The manifest and blobs are those `repo:latest` already holds.
    """
    if target.sqlite_path is not None:
        connection = sqlite3.connect(target.sqlite_path, timeout=30, isolation_level=None)
        mark = "?"
    else:
        connection = psycopg2.connect(target.dsn)
        mark = "%s"

    def sql(statement: str) -> str:
        return statement.replace("?", mark)

    cursor = connection.cursor()
    cursor.execute("BEGIN")
    cursor.execute(sql("SELECT id, latest_version FROM repositories WHERE name = ?"), (repo,))
    repo_id, latest = cursor.fetchone()
    cursor.execute(sql("SELECT kind, name, digest FROM repository_content "
                       "WHERE repository_id = ? AND version_removed IS NULL"), (repo_id,))
    content = cursor.fetchall()
    digest = next(d for kind, name, d in content if kind == "tag" and name == "latest")
    now = time.time()
    cursor.executemany(sql(
        "INSERT INTO repository_versions (repository_id, number, base_version, reason, created) "
        "VALUES (?, ?, ?, ?, ?)"),
        [(repo_id, latest + i, latest + i - 1, f"push tag t{i}", now) for i in range(1, tags)])
    cursor.executemany(sql(
        "INSERT INTO repository_content (repository_id, kind, name, digest, version_added) "
        "VALUES (?, 'tag', ?, ?, ?)"),
        [(repo_id, f"t{i}", digest, latest + i) for i in range(1, tags)])
    cursor.execute(sql("UPDATE repositories SET latest_version = ? WHERE id = ?"),
                   (latest + max(tags - 1, 0), repo_id))
    for k in range(repositories - 1):
        name = f"{repo}-r{k}"
        cursor.execute(sql("INSERT INTO repositories (name, latest_version, created) "
                           "VALUES (?, 1, ?) RETURNING id"), (name, now))
        new_id = cursor.fetchone()[0]
        cursor.executemany(sql(
            "INSERT INTO repository_versions (repository_id, number, base_version, reason, "
            "created) VALUES (?, ?, ?, ?, ?)"),
            [(new_id, 0, None, "created", now), (new_id, 1, 0, "push tag latest", now)])
        cursor.executemany(sql(
            "INSERT INTO repository_content (repository_id, kind, name, digest, version_added) "
            "VALUES (?, ?, ?, ?, 1)"), [(new_id, *row) for row in content])
        cursor.execute(sql("INSERT INTO distributions (base_path, repository_id, version, "
                           "created) VALUES (?, ?, NULL, ?)"), (name, new_id, now))
    cursor.execute("COMMIT")
    connection.close()


def populate_distribution(target: Target, repo: str, tags: int, repositories: int) -> None:
    """The same for distribution: the link files its tag and repository pushes write.

    A new repository is a copy of `repo`'s directory (its layer, revision and
    tag links): call with `tags` = 1 when `repositories` > 1.
    """
    root = target.data_dir / "docker/registry/v2/repositories"
    tag_dir = root / repo / "_manifests/tags"
    current = (tag_dir / "latest/current/link").read_text()
    algorithm, hexdigest = current.split(":")
    for i in range(1, tags):
        one = tag_dir / f"t{i}"
        (one / "current").mkdir(parents=True)
        (one / "current/link").write_text(current)
        index = one / "index" / algorithm / hexdigest
        index.mkdir(parents=True)
        (index / "link").write_text(current)
    for k in range(repositories - 1):
        shutil.copytree(root / repo, root / f"{repo}-r{k}")


def scaling(bench: Bench, targets: list[Target], tags: int, repositories: int,
            run: int) -> dict[str, tuple[Result, Sample]]:
    repo = f"bench/scale{tags}x{repositories}"
    out = {}
    for target in targets:
        with contextlib.closing(connect(target)) as conn:
            push_image(conn, repo, "latest", [bench.base_layer])
        if target.name == DISTRIBUTION:
            populate_distribution(target, repo, tags, repositories)
        else:
            populate_ocireg(target, repo, tags, repositories)
    script = bench.workdir / f"scale{tags}x{repositories}.lua"
    # Each request names one of the repositories at random: a cache cannot hold just one.
    script.write_text(
        f'math.randomseed({run})\nrequest = function()\n'
        f'  local k = math.random(0, {repositories - 1})\n'
        f'  local name = "{repo}"\n'
        f'  if k > 0 then name = name .. "-r" .. (k - 1) end\n'
        f'  return wrk.format("GET", "/v2/" .. name .. "/manifests/latest", '
        f'{{Accept = "{OCI_MANIFEST}"}})\nend\n'
    )
    for target in rotate(targets, run):
        holder: list[Result] = []
        sample = measure(target.pid, 0, lambda t=target, h=holder: h.append(
            wrk(t, "/", bench.seconds, 64, script)))
        out[target.name] = (holder[0], sample)
    return out


# --- the run ---------------------------------------------------------------------------


def rotate(items: list[Target], by: int) -> list[Target]:
    by %= len(items)
    return items[by:] + items[:by]


@contextlib.contextmanager
def started(names: list[str], args: argparse.Namespace, workdir: Path) -> Iterator[list[Target]]:
    with contextlib.ExitStack() as stack:
        targets = []
        for name in names:
            data_dir = workdir / f"data-{name}"
            data_dir.mkdir()
            port = free_port()
            target = Target(name, port, 0, data_dir)
            if name == DISTRIBUTION:
                command, env = reference_command(port, data_dir, workdir)
            else:
                command, env = ocireg_command(port, data_dir)
                # twist's own log observer, not ocireg's, serves `python -m twisted`: tell
                # it too to leave out the access log (as twistd with log_level = warn would).
                command[3:3] = ["--log-level", "warn", "--log-format", "text"]
                command += ["--log-level", "warn"]
                if name == "pg":
                    database = Database(args.dsn)
                    stack.callback(database.drop)
                    command += ["--database", database.dsn]
                    target.dsn = database.dsn
                else:
                    target.sqlite_path = data_dir / "metadata.sqlite3"
            server = stack.enter_context(running_server(name, command, env, port, workdir))
            target.pid = server.proc.pid
            targets.append(target)
        yield targets


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def print_table(title: str, figures: list[Figure], rows: dict[str, Row], names: list[str]) -> None:
    oci = [n for n in names if n != DISTRIBUTION]
    header = ["figure", "unit", *names]
    header += [f"{n}/dist" for n in oci if DISTRIBUTION in names] + ["target"]
    header += [f"p99 ms {n}" for n in names]
    header += [f"CPU {n}" for n in names] + [f"RSS MiB {n}" for n in names]
    table = [header]
    for figure in figures:
        if figure.name not in rows:
            continue
        row = rows[figure.name]
        values = {n: median([r.value for r, _ in row.samples.get(n, [])]) for n in names}
        cells = [figure.name, figure.unit, *(fmt(values[n], 2 if figure.unit == "s" else 0)
                                             for n in names)]
        for n in oci:
            if DISTRIBUTION not in names:
                break
            a, b = values[n], values[DISTRIBUTION]
            ratio = None if not a or not b else (a / b if figure.higher_is_better else b / a)
            met = "" if figure.target is None or ratio is None else (
                " ok" if ratio >= figure.target else " MISS")
            cells.append(f"{fmt(ratio, 2)}x{met}")
        cells.append(f">={figure.target:g}x" if figure.target else "-")
        for n in names:
            cells.append(fmt(median([r.p99_ms for r, _ in row.samples.get(n, [])
                                     if r.p99_ms is not None]), 1))
        for n in names:
            cells.append(cpu_cell(row.samples.get(n, [])))
        for n in names:
            cells.append(fmt(max((s.server_peak_rss_mib or 0 for _, s in row.samples.get(n, [])),
                                 default=None)))
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    print(title)
    for r in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    print("CPU: server CPU seconds per GiB moved (MiB/s rows), else server CPU "
          "microseconds per request; RSS: the server's peak during the figure.")
    sys.stdout.flush()


def cpu_cell(samples: list[tuple[Result, Sample]]) -> str:
    per = []
    for result, sample in samples:
        if sample.server_cpu_s is None:
            continue
        if result.gib:
            per.append(sample.server_cpu_s / result.gib)
        elif result.requests:
            per.append(sample.server_cpu_s / result.requests * 1e6)
    value = median(per)
    if value is None:
        return "-"
    return f"{value:.2f}s" if samples[0][0].gib else f"{value:.0f}us"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    parser.add_argument("--repeat", type=int, help="runs of each figure (default 3; quick: 1)")
    parser.add_argument("--size-mib", type=int, help="the big blob (default 1024; quick: 64)")
    parser.add_argument("--only", default=f"sqlite,pg,{DISTRIBUTION}",
                        help="targets, comma-separated: sqlite, pg, distribution")
    parser.add_argument("--figures", help="only figures whose name contains one of these "
                        "comma-separated words")
    parser.add_argument("--dsn", default=os.environ.get(
        "OCIREG_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling figures")
    parser.add_argument("--json", type=Path, help="also write every sample to this file")
    parser.add_argument("--tmpdir", type=Path, help="where data dirs go (default: the system's)")
    args = parser.parse_args(argv)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.size_mib = args.size_mib or (64 if args.quick else 1024)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(args.names) - {"sqlite", "pg", DISTRIBUTION}
    if unknown or args.repeat < 1 or args.size_mib < 1:
        parser.error(f"bad --only {sorted(unknown)} or non-positive --repeat/--size-mib")
    return args


def check_tools(names: list[str]) -> None:
    missing = [tool for tool in ("wrk", *(["docker-registry"] if DISTRIBUTION in names else []))
               if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: apt-get install -y {' '.join(missing)}")


def title(args: argparse.Namespace, load: float, began: float) -> str:
    return (f"ocireg vs {DISTRIBUTION}: {args.repeat} repeat(s), medians; "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
            f"{load:.2f} at start, {os.getloadavg()[0]:.2f} at end, "
            f"{time.monotonic() - began:.0f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools(args.names)
    began = time.monotonic()
    load = os.getloadavg()[0]
    rows: dict[str, Row] = {}
    scale_rows: dict[str, Row] = {}
    with tempfile.TemporaryDirectory(prefix="ocireg-compare-", dir=args.tmpdir) as tmp:
        workdir = Path(tmp)
        bench = Bench(args, workdir)
        figures = [f for f in bench.figures() if not (f.full_only and args.quick)]
        if args.figures:
            words = args.figures.split(",")
            figures = [f for f in figures if any(w in f.name for w in words)]
        with started(args.names, args, workdir) as targets:
            for target in targets:
                bench.setup_read_targets(target)
            for figure in figures:
                row = rows[figure.name] = Row()
                for run in range(args.repeat):
                    for target in rotate(targets, run):
                        row.samples.setdefault(target.name, []).append(
                            timed(target, figure, run))
            print_table(title(args, load, began), figures, rows, args.names)
            if not (args.quick or args.no_scaling):
                for tags, repositories in ((10, 1), (1000, 1), (100_000, 1), (1, 10),
                                           (1, 10_000)):
                    label = f"manifest GET, {tags:,} tags, {repositories:,} repositories"
                    row = scale_rows[label] = Row()
                    try:
                        found = scaling(bench, targets, tags, repositories, 0)
                    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                        # One broken configuration leaves the others' figures standing.
                        print(f"{label}: failed: {e}", file=sys.stderr)
                        continue
                    for name, sample in found.items():
                        row.samples[name] = [sample]
    if scale_rows:
        scale_figures = [Figure(label, "req/s", True, None, bench.manifest_get)
                         for label in scale_rows]
        print()
        print_table("Scaling (one run; each request names a repository at random)",
                    scale_figures, scale_rows, args.names)
    if args.json:
        args.json.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()},
            "figures": {name: {t: [{"result": asdict(r), "sample": asdict(s)} for r, s in runs]
                               for t, runs in row.samples.items()}
                        for name, row in {**rows, **scale_rows}.items()},
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
