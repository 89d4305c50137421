"""`ocireg repo list|show|create|set|delete` and `ocireg staging show|discard`: repositories."""

from __future__ import annotations

from urllib.parse import urlencode

from ocireg.cli.client import EXIT_FAILED, Client, CommandError, quote_name
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


def _repository_rows(out: Output, r: dict) -> None:
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


async def repo_show(client: Client, out: Output, args) -> object:
    r = await client.call("GET", f"/repositories/{quote_name(args.name)}")
    if not args.json:
        _repository_rows(out, r)
    return r


async def repo_create(client: Client, out: Output, args) -> object:
    body: dict = {"name": args.name}
    if args.retain is not None:
        body["retain_versions"] = args.retain
    r = await client.call("POST", "/repositories/", body)
    if not args.json:
        out.line(f"created repository {r['name']}")
    return r


async def repo_set(client: Client, out: Output, args) -> object:
    r = await client.call(
        "PATCH", f"/repositories/{quote_name(args.name)}", {"retain_versions": args.retain}
    )
    if not args.json:
        _repository_rows(out, r)
    return r


async def repo_delete(client: Client, out: Output, args) -> object:
    path = f"/repositories/{quote_name(args.name)}"
    if not args.yes:
        r = await client.call("GET", path)
        versions = r["latest_version"] + 1
        served = ", ".join(r["distributions"]) or "none"
        if not out.confirm(
            f"delete repository {r['name']} with its {versions} versions and its "
            f"distributions ({served})? [y/N] "
        ):
            raise CommandError(f"repository {args.name} not deleted (answer y, or pass --yes)",
                               EXIT_FAILED)
    await client.call("DELETE", path)
    if not args.json:
        out.line(f"deleted repository {args.name}")
    return {"deleted": args.name}


async def staging_show(client: Client, out: Output, args) -> object:
    s = await client.call("GET", f"/repositories/{quote_name(args.name)}/staging")
    if not args.json:
        age = "empty" if s["age"] is None else f"oldest staged {s['age']:.0f} s ago"
        out.line(f"{s['repository']} staging: {len(s['content'])} items, "
                 f"{len(s['uploads'])} uploads in progress; {age}")
        if s["content"]:
            out.table(["KIND", "DIGEST", "STAGED"],
                      [(i["kind"], i["digest"], when(i["created"])) for i in s["content"]])
        if s["uploads"]:
            out.table(["UPLOAD", "THROUGH", "STARTED", "LAST WRITE"],
                      [(u["uuid"], u["base_path"], when(u["created"]), when(u["updated"]))
                       for u in s["uploads"]])
    return s


async def staging_discard(client: Client, out: Output, args) -> object:
    d = await client.call("DELETE", f"/repositories/{quote_name(args.name)}/staging")
    if not args.json:
        out.line(f"{d['repository']}: discarded {d['discarded']} staged items")
    return d

