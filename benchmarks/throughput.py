"""Blob throughput of a registry over loopback: upload, chunked upload, download.

Starts the registry under test (ocireg, or with --reference Debian's
docker-registry, the CNCF distribution) on a free 127.0.0.1 port with an empty
data directory, pushes and pulls one random blob per step and repeat, and
prints MiB/s beside the machine's sha256 ceiling, with the server's CPU time
per GiB and its peak RSS during each step.

    python benchmarks/throughput.py [--size-mib 1024] [--repeat 3] [--quick]
                                    [--reference] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Self
from urllib.parse import quote, urljoin, urlsplit

MiB = 1 << 20
GiB = 1 << 30
PATCH_SIZE = 16 * MiB
READ_SIZE = 1 * MiB
HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
IO_TIMEOUT = 300.0
RSS_INTERVAL = 0.02
SAMPLER_LIMIT = 3600.0  # seconds one step may be sampled for
STEPS = ("monolithic upload", "chunked upload", "download")
CEILING = "sha256 (ceiling)"


@dataclass(frozen=True)
class Blob:
    path: Path
    size: int
    digest: str


@dataclass
class Server:
    name: str
    command: list[str]
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


@dataclass(frozen=True)
class Sample:
    seconds: float
    mib_s: float
    server_cpu_s: float | None
    client_cpu_s: float
    server_peak_rss_mib: float | None


# --- the server under test ---------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def ocireg_command(port: int, data_dir: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    command = [
        sys.executable, "-m", "twisted", "ocireg",
        "--listen", f"tcp:{port}:interface={HOST}",
        "--data-dir", str(data_dir),
    ]
    return command, env


def reference_command(port: int, data_dir: Path, workdir: Path) -> tuple[list[str], dict[str, str]]:
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(binary).exists():
        raise SystemExit("docker-registry not found: apt-get install -y docker-registry")
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {data_dir}\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        "  redirect:\n    disable: true\n"
        f"http:\n  addr: {HOST}:{port}\n"
    )
    return [binary, "serve", str(config)], dict(os.environ)


def answers_200(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/v2/")
        response = conn.getresponse()
        response.read()
        return response.status == HTTPStatus.OK
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def running_server(name: str, command: list[str], env: dict[str, str], port: int,
                   workdir: Path) -> Iterator[Server]:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
    server = Server(name, command, proc, port, log)
    try:
        wait_ready(server)
        yield server
    finally:
        stop(proc)


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    for _ in range(int(READY_TIMEOUT / 0.1)):
        if server.proc.poll() is not None or time.monotonic() > deadline:
            break
        if answers_200(server.port):
            return
        time.sleep(0.1)
    tail = server.log.read_text(errors="replace")[-3000:]
    state = f"exited {server.proc.returncode}" if server.proc.poll() is not None else "no answer"
    raise SystemExit(f"{server.name}: GET /v2/ did not answer 200 ({state}):\n"
                     f"$ {' '.join(server.command)}\n{tail}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


# --- measuring the server process -------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_mib(pid: int, key: str) -> float | None:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return None


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so it becomes per-step."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Polls VmRSS while a step runs, for when VmHWM cannot be reset."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(int(SAMPLER_LIMIT / RSS_INTERVAL)):
            self.peak = max(self.peak, status_mib(self.pid, "VmRSS") or 0.0)
            if self._stop.wait(RSS_INTERVAL):
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(pid: int | None, size: int, step: Callable[[], None]) -> Sample:
    os.sync()  # the last step's dirty pages are not this step's cost
    hwm_reset = pid is not None and reset_peak_rss(pid)
    cpu0 = cpu_seconds(pid) if pid else None
    client0 = client_cpu_seconds()
    with RssSampler(pid) if pid else contextlib.nullcontext() as sampler:
        start = time.perf_counter()
        step()
        seconds = time.perf_counter() - start
    client = client_cpu_seconds() - client0
    if pid is None:
        return Sample(seconds, size / MiB / seconds, None, client, None)
    cpu1 = cpu_seconds(pid)
    server_cpu = round(cpu1 - cpu0, 2) if cpu0 is not None and cpu1 is not None else None
    peak = sampler.peak
    if hwm_reset:
        peak = max(peak, status_mib(pid, "VmHWM") or 0.0)
    return Sample(seconds, size / MiB / seconds, server_cpu, client, peak or None)


# --- the client ---------------------------------------------------------------


def make_blob(path: Path, size: int) -> Blob:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for offset in range(0, size, READ_SIZE):
            chunk = os.urandom(min(READ_SIZE, size - offset))
            digest.update(chunk)
            out.write(chunk)
    return Blob(path, size, "sha256:" + digest.hexdigest())


def sha256_file(blob: Blob) -> None:
    digest = hashlib.sha256()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    with blob.path.open("rb", buffering=0) as f:
        for _ in range(blob.size + 1):
            n = f.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
    if "sha256:" + digest.hexdigest() != blob.digest:
        raise RuntimeError("the blob file changed under the benchmark")


def request(conn: http.client.HTTPConnection, method: str, target: str,
            headers: dict[str, str], body: tuple[Blob, int, int] | None = None,
            ) -> http.client.HTTPResponse:
    """Send a request; a body (blob, offset, count) goes out with sendfile."""
    conn.putrequest(method, target, skip_accept_encoding=True)
    length = body[2] if body else 0
    if method != "GET":
        headers = {**headers, "Content-Length": str(length)}
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    if body and length:
        blob, offset, count = body
        with blob.path.open("rb") as f:
            sent = conn.sock.sendfile(f, offset, count)
        if sent != count:
            raise RuntimeError(f"sent {sent} of {count} bytes")
    return conn.getresponse()


def expect(response: http.client.HTTPResponse, status: int, what: str) -> None:
    body = response.read()
    if response.status != status:
        raise RuntimeError(f"{what}: expected {status}, got {response.status} "
                           f"{response.reason}: {body[:500]!r}")


def resolve(current: str, location: str | None) -> str:
    """Turn a Location header (relative or absolute) into a request target."""
    if not location:
        raise RuntimeError(f"no Location header in the answer to {current}")
    url = urlsplit(urljoin(f"http://{HOST}{current}", location))
    return url.path + (f"?{url.query}" if url.query else "")


def with_digest(target: str, digest: str) -> str:
    return f"{target}{'&' if '?' in target else '?'}digest={quote(digest, safe='')}"


def start_upload(conn: http.client.HTTPConnection, repo: str) -> str:
    target = f"/v2/{repo}/blobs/uploads/"
    response = request(conn, "POST", target, {})
    expect(response, HTTPStatus.ACCEPTED, f"POST {target}")
    return resolve(target, response.getheader("Location"))


def finish_upload(response: http.client.HTTPResponse, blob: Blob, what: str) -> None:
    expect(response, HTTPStatus.CREATED, what)
    served = response.getheader("Docker-Content-Digest")
    if served and served != blob.digest:
        raise RuntimeError(f"{what}: Docker-Content-Digest {served} != {blob.digest}")


def upload_monolithic(conn: http.client.HTTPConnection, repo: str, blob: Blob) -> None:
    target = with_digest(start_upload(conn, repo), blob.digest)
    headers = {"Content-Type": "application/octet-stream"}
    response = request(conn, "PUT", target, headers, (blob, 0, blob.size))
    finish_upload(response, blob, f"PUT {repo} monolithic")


def upload_chunked(conn: http.client.HTTPConnection, repo: str, blob: Blob) -> None:
    target = start_upload(conn, repo)
    for start in range(0, blob.size, PATCH_SIZE):
        count = min(PATCH_SIZE, blob.size - start)
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"{start}-{start + count - 1}"}
        response = request(conn, "PATCH", target, headers, (blob, start, count))
        expect(response, HTTPStatus.ACCEPTED, f"PATCH {repo} at {start}")
        target = resolve(target, response.getheader("Location"))
    response = request(conn, "PUT", with_digest(target, blob.digest), {})
    finish_upload(response, blob, f"PUT {repo} after PATCHes")


def download(conn: http.client.HTTPConnection, repo: str, blob: Blob) -> None:
    target = f"/v2/{repo}/blobs/{blob.digest}"
    response = request(conn, "GET", target, {})
    if response.status != HTTPStatus.OK:
        expect(response, HTTPStatus.OK, f"GET {target}")
    buffer = bytearray(READ_SIZE)
    received = 0
    for _ in range(blob.size + 1):
        n = response.readinto(buffer)
        if not n:
            break
        received += n
    if received != blob.size:
        raise RuntimeError(f"GET {target}: {received} bytes, expected {blob.size}")


# --- the run --------------------------------------------------------------------


def run_repeat(server: Server, blob: Blob, index: int) -> dict[str, Sample]:
    pid = server.proc.pid
    conn = http.client.HTTPConnection(HOST, server.port, timeout=IO_TIMEOUT)
    mono, chunked = f"bench/run{index}/monolithic", f"bench/run{index}/chunked"
    try:
        samples = {
            STEPS[0]: measure(pid, blob.size, lambda: upload_monolithic(conn, mono, blob)),
            STEPS[1]: measure(pid, blob.size, lambda: upload_chunked(conn, chunked, blob)),
            STEPS[2]: measure(pid, blob.size, lambda: download(conn, chunked, blob)),
        }
    finally:
        conn.close()
    samples[CEILING] = measure(None, blob.size, lambda: sha256_file(blob))
    return samples


def summarise(samples: list[Sample], size: int) -> dict[str, float | None]:
    rates = [s.mib_s for s in samples]
    cpu = [s.server_cpu_s for s in samples if s.server_cpu_s is not None]
    rss = [s.server_peak_rss_mib for s in samples if s.server_peak_rss_mib is not None]
    gib = size / GiB
    return {
        "mib_s_median": statistics.median(rates),
        "mib_s_min": min(rates),
        "mib_s_max": max(rates),
        "server_cpu_s_per_gib": statistics.median(cpu) / gib if cpu else None,
        "client_cpu_s_per_gib": statistics.median(s.client_cpu_s for s in samples) / gib,
        "server_peak_rss_mib": max(rss) if rss else None,
    }


def cell(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(title: str, summary: dict[str, dict[str, float | None]]) -> None:
    ceiling = summary[CEILING]["mib_s_median"]
    header = ("step", "MiB/s", "min", "max", "% sha256", "srv CPU s/GiB",
              "cli CPU s/GiB", "srv peak RSS MiB", "sha256 MiB/s")
    rows = [header]
    for step, s in summary.items():
        share = 100 * s["mib_s_median"] / ceiling if ceiling and step != CEILING else None
        rows.append((step, cell(s["mib_s_median"]), cell(s["mib_s_min"]), cell(s["mib_s_max"]),
                     cell(share), cell(s["server_cpu_s_per_gib"], 2),
                     cell(s["client_cpu_s_per_gib"], 2), cell(s["server_peak_rss_mib"]),
                     cell(ceiling)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print(title)
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, help="blob size (default 1024; --quick: 256)")
    parser.add_argument("--repeat", type=int, help="runs of every step (default 3; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="256 MiB, 1 repeat")
    parser.add_argument("--reference", action="store_true",
                        help="measure Debian's docker-registry (CNCF distribution) instead")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--tmpdir", type=Path,
                        help="where the blob and the data dir go (default: the system's)")
    args = parser.parse_args(argv)
    args.size_mib = args.size_mib or (256 if args.quick else 1024)
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.size_mib < 1 or args.repeat < 1:
        parser.error("--size-mib and --repeat must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ocireg-bench-", dir=args.tmpdir) as tmp:
        workdir = Path(tmp)
        data_dir = workdir / "data"
        data_dir.mkdir()
        blob = make_blob(workdir / "blob.bin", args.size_mib * MiB)
        port = free_port()
        if args.reference:
            name = "docker-registry"
            command, env = reference_command(port, data_dir, workdir)
        else:
            name = "ocireg"
            command, env = ocireg_command(port, data_dir)
        runs: dict[str, list[Sample]] = {step: [] for step in (*STEPS, CEILING)}
        with running_server(name, command, env, port, workdir) as server:
            for index in range(args.repeat):
                for step, sample in run_repeat(server, blob, index).items():
                    runs[step].append(sample)
    summary = {step: summarise(samples, blob.size) for step, samples in runs.items()}
    title = (f"{name}: {args.size_mib} MiB blob, {args.repeat} repeat(s), "
             f"{PATCH_SIZE // MiB} MiB PATCHes, {os.cpu_count()} CPUs, "
             f"Python {platform.python_version()}")
    print_table(title, summary)
    if args.json:
        args.json.write_text(json.dumps({
            "target": name, "command": command, "size_mib": args.size_mib,
            "repeat": args.repeat, "patch_mib": PATCH_SIZE // MiB,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "summary": summary,
            "runs": {step: [asdict(s) for s in samples] for step, samples in runs.items()},
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
