"""`ocireg gc`, `ocireg gc-history` and `ocireg scrub`: collection and blob checks."""

from __future__ import annotations

import json

from ocireg.cli.client import EXIT_CONFLICT, Client, CommandError
from ocireg.cli.output import Output, size, when, with_rfc3339_times


def _collection_row(run: dict) -> list[object]:
    return [when(run["started"]), "dry run" if run["dry_run"] else "collected",
            run["manifests"], run["blobs"], size(run["bytes"]), run["stray_files"],
            f"{run['duration']:.2f}s"]


_COLLECTION_HEADERS = ("STARTED", "KIND", "MANIFESTS", "BLOBS", "FREED", "STRAY", "TOOK")


async def gc(client: Client, out: Output, args) -> object:
    run = await client.call("POST", "/gc", {"dry_run": args.dry_run})
    if not args.json:
        would = "would remove" if run["dry_run"] else "removed"
        out.line(f"{would} {run['manifests']} manifests and {run['blobs']} blobs, "
                 f"{size(run['bytes'])}; {run['stray_files']} stray files")
    return run


async def gc_history(client: Client, out: Output, args) -> object:
    found = await client.call("GET", "/gc")
    if not args.json:
        out.table(_COLLECTION_HEADERS, [_collection_row(r) for r in found["runs"]])
    return found


async def scrub(client: Client, out: Output, args) -> object:
    report = await client.call("POST", "/scrub")
    if not args.json:
        out.line(f"{report['checked']} blobs checked: {len(report['missing'])} missing, "
                 f"{len(report['corrupt'])} corrupt (moved aside)")
        for digest in report["missing"]:
            out.line(f"missing  {digest}")
        for digest in report["corrupt"]:
            out.line(f"corrupt  {digest}")
    if not report["healthy"]:
        if args.json:
            out.line(json.dumps(with_rfc3339_times(report), indent=2, sort_keys=True))
        raise CommandError("the blob store has missing or corrupt blobs", EXIT_CONFLICT)
    return report
