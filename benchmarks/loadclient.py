"""A bounded HTTP/1.1 load client: N keep-alive connections, one request in flight on each.

For what wrk cannot do: wrk waits for the body a HEAD response announces.
Prints one JSON line: requests, seconds, rate, p50_ms, p99_ms.

    python benchmarks/loadclient.py --port 5000 --path /v2/x/blobs/sha256:… \
        [--method HEAD] [--connections 64] [--seconds 10] [--header 'Accept: …']
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

IO_TIMEOUT = 30.0


async def _worker(host: str, port: int, request: bytes, head: bool, deadline: float,
                  latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            writer.write(request)
            headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
            status = headers[9:12]
            if status not in (b"200", b"404"):
                raise RuntimeError(f"answered {headers[:200]!r}")
            if not head:
                length = 0
                for line in headers.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def _run(args: argparse.Namespace) -> dict:
    extra = "".join(f"{h}\r\n" for h in args.header)
    request = (f"{args.method} {args.path} HTTP/1.1\r\nHost: {args.host}\r\n{extra}\r\n").encode()
    latencies: list[float] = []
    started = time.monotonic()
    deadline = started + args.seconds
    await asyncio.gather(*(
        _worker(args.host, args.port, request, args.method == "HEAD", deadline, latencies)
        for _ in range(args.connections)
    ))
    seconds = time.monotonic() - started
    latencies.sort()

    def quantile(q: float) -> float | None:
        return latencies[min(int(q * len(latencies)), len(latencies) - 1)] * 1000 if latencies \
            else None

    return {"requests": len(latencies), "seconds": seconds, "rate": len(latencies) / seconds,
            "p50_ms": quantile(0.5), "p99_ms": quantile(0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    sys.stdout.write(json.dumps(asyncio.run(_run(args))) + "\n")


if __name__ == "__main__":
    main()
