"""Metadata throughput: manifest GETs per second and small image pushes per second.

Runs ocireg on SQLite, on PostgreSQL with one worker and on PostgreSQL with
two workers (each on an empty data directory and, for PostgreSQL, a fresh
database that is dropped afterwards), and measures

- manifest GET: `GET /v2/<name>/manifests/<tag>` from a bounded number of
  concurrent keep-alive connections (asyncio, one client process), for a
  fixed time;
- push: sequential pushes of a small image (config blob, one 4 KiB layer,
  manifest under a new tag: 3 requests, one new repository version each),
  from one connection, for a fixed time.

    python benchmarks/metadata.py [--seconds 10] [--concurrency 16]
        [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [--only sqlite,pg1,pg2]
        [--json FILE]

The client shares the machine with the server: on a 2-core machine the
two-worker figures are bounded by the client's own CPU too.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg2
import psycopg2.extensions

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
NAME = "bench/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
READY_TIMEOUT = 30.0
IO_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Database:
    """A fresh PostgreSQL database on the server of `admin_dsn`, dropped by `drop`."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.name = f"ocireg_bench_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{self.name}"')

    @property
    def dsn(self) -> str:
        parts = psycopg2.extensions.parse_dsn(self.admin_dsn)
        user = parts.get("user", "")
        auth = f"{user}:{parts['password']}@" if parts.get("password") else f"{user}@"
        host, port = parts.get("host", HOST), parts.get("port", "5432")
        return f"postgresql://{auth if user else ''}{host}:{port}/{self.name}"

    def _admin(self, statement: str) -> None:
        connection = psycopg2.connect(self.admin_dsn, connect_timeout=10)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Server:
    """An ocireg process (and its workers) on a free loopback port."""

    def __init__(self, workdir: Path, *options: str) -> None:
        self.port = free_port()
        self.log = workdir / "ocireg.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "twisted", "--log-format", "text", "ocireg",
                 "--listen", f"tcp:{self.port}:interface={HOST}",
                 "--data-dir", str(workdir / "data"), *options],
                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ocireg exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/v2/", timeout=2):
                    time.sleep(0.5)  # let workers finish starting too
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("ocireg did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(15)


class Client:
    """One keep-alive connection speaking the registry protocol."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection(HOST, port, timeout=IO_TIMEOUT)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
        self.connection.request(method, path, body=body, headers=headers or {})
        response = self.connection.getresponse()
        return response.status, response.read()

    def push(self, tag: str) -> None:
        config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
        layer = os.urandom(4096)
        for blob in (config, layer):
            status, body = self.request(
                "POST", f"/v2/{NAME}/blobs/uploads/?digest={digest(blob)}", blob,
                {"Content-Type": "application/octet-stream"},
            )
            assert status == 201, (status, body[:200])
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digest(layer), "size": len(layer)}],
        }).encode()
        status, body = self.request("PUT", f"/v2/{NAME}/manifests/{tag}", manifest,
                                    {"Content-Type": OCI_MANIFEST})
        assert status == 201, (status, body[:200])


async def _getter(port: int, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    request = (
        f"GET /v2/{NAME}/manifests/latest HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Accept: {OCI_MANIFEST}\r\n\r\n"
    ).encode()
    try:
        while time.monotonic() < deadline:
            writer.write(request)
            status_line = await asyncio.wait_for(reader.readline(), IO_TIMEOUT)
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if b" 200 " not in status_line:
                raise RuntimeError(f"manifest GET answered {status_line!r}")
            counts[0] += 1
    finally:
        writer.close()


def manifest_gets(port: int, seconds: float, concurrency: int) -> float:
    async def run() -> int:
        counts = [0]
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_getter(port, deadline, counts) for _ in range(concurrency)))
        return counts[0]

    started = time.monotonic()
    done = asyncio.run(run())
    return done / (time.monotonic() - started)


def pushes(port: int, seconds: float) -> float:
    client = Client(port)
    done = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        client.push(f"p{done}")
        done += 1
    return done / (time.monotonic() - started)


def measure(label: str, options: list[str], args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="ocireg-bench-") as tmp:
        database = Database(args.dsn) if label.startswith("pg") else None
        try:
            if database is not None:
                options = [*options, "--database", database.dsn]
            server = Server(Path(tmp), *options)
            try:
                Client(server.port).push("latest")
                manifest_gets(server.port, 1.0, args.concurrency)  # warm-up
                gets = manifest_gets(server.port, args.seconds, args.concurrency)
                push_rate = pushes(server.port, args.seconds)
            finally:
                server.stop()
        finally:
            if database is not None:
                database.drop()
    return {"setup": label, "manifest_get_per_s": round(gets, 1),
            "pushes_per_s": round(push_rate, 2)}


SETUPS = {
    "sqlite": [],
    "pg1": ["--workers", "1"],
    "pg2": ["--workers", "2"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--dsn", default=os.environ.get(
        "OCIREG_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--only", default=",".join(SETUPS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    header = f"{'setup':8} {'manifest GET/s':>15} {'pushes/s':>10}"
    sys.stdout.write(f"{os.cpu_count()} CPUs, {args.concurrency} concurrent GET connections, "
                     f"{args.seconds:g} s per figure\n{header}\n")
    for label in args.only.split(","):
        result = measure(label, SETUPS[label], args)
        results.append(result)
        sys.stdout.write(f"{label:8} {result['manifest_get_per_s']:>15} "
                         f"{result['pushes_per_s']:>10}\n")
        sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
