"""`ocireg repo list|show|create|delete`: repositories."""

from __future__ import annotations

from urllib.parse import urlencode

from ocireg.cli.client import Client, quote_name
from ocireg.cli.output import Output, size, when


async def repo_list(client: Client, out: Output, args) -> object:
    query = {k: v for k, v in (("prefix", args.prefix), ("limit", args.limit),
                               ("after", args.after)) if v}
    document = await client.call("GET", "/repositories/?" + urlencode(query))
    if not args.json:
        out.table(
            ["NAME", "LATEST", "TAGS", "MANIFESTS", "SIZE", "UNIQUE"],
            [(r["name"], r["latest_version"], r["tags"], r["manifests"], size(r["size"]),
              size(r["unique_size"])) for r in document["repositories"]],
        )
        if document["next"]:
            out.line(f"(more: --after {document['next']})")
    return document


async def repo_show(client: Client, out: Output, args) -> object:
    r = await client.call("GET", f"/repositories/{quote_name(args.name)}")
    if not args.json:
        out.table(["FIELD", "VALUE"], [
            ("name", r["name"]),
            ("latest version", r["latest_version"]),
            ("tags", r["tags"]),
            ("manifests", r["manifests"]),
            ("size", size(r["size"])),
            ("unique size", size(r["unique_size"])),
            ("retain versions", r["retain_versions"] or "all"),
            ("distributions", ", ".join(r["distributions"]) or "-"),
            ("created", when(r["created"])),
        ])
    return r


async def repo_create(client: Client, out: Output, args) -> object:
    body: dict = {"name": args.name}
    if args.retain is not None:
        body["retain_versions"] = args.retain
    r = await client.call("POST", "/repositories/", body)
    if not args.json:
        out.line(f"created repository {r['name']}")
    return r


async def repo_delete(client: Client, out: Output, args) -> object:
    await client.call("DELETE", f"/repositories/{quote_name(args.name)}")
    if not args.json:
        out.line(f"deleted repository {args.name}")
    return {"deleted": args.name}
