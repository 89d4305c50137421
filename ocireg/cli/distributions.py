"""`ocireg distribution create|list|show|pin|unpin|delete`: the base paths pulls use."""

from __future__ import annotations

from urllib.parse import urlencode

from ocireg.cli.client import Client, quote_name
from ocireg.cli.output import Output


def _distribution_rows(out: Output, found: list[dict]) -> None:
    out.table(
        ["BASE PATH", "REPOSITORY", "PINNED", "SERVES"],
        [(d["base_path"], d["repository"], d["version"], d["serves"]) for d in found],
    )


async def distribution_list(client: Client, out: Output, args) -> object:
    query = {k: v for k, v in (("repository", args.repository), ("limit", args.limit),
                               ("after", args.after)) if v}
    document = await client.call("GET", "/distributions/?" + urlencode(query))
    if not args.json:
        _distribution_rows(out, document["distributions"])
        if document["next"]:
            out.line(f"(more: --after {document['next']})")
    return document


async def distribution_show(client: Client, out: Output, args) -> object:
    d = await client.call("GET", f"/distributions/{quote_name(args.base_path)}")
    if not args.json:
        _distribution_rows(out, [d])
    return d


async def distribution_create(client: Client, out: Output, args) -> object:
    body: dict = {"base_path": args.base_path, "repository": args.repository}
    if args.version is not None:
        body["version"] = args.version
    d = await client.call("POST", "/distributions/", body)
    if not args.json:
        _distribution_rows(out, [d])
    return d


async def distribution_pin(client: Client, out: Output, args) -> object:
    d = await client.call(
        "PATCH", f"/distributions/{quote_name(args.base_path)}", {"version": args.number}
    )
    if not args.json:
        out.line(f"{d['base_path']} serves version {d['serves']} of {d['repository']}, pinned")
    return d


async def distribution_unpin(client: Client, out: Output, args) -> object:
    d = await client.call(
        "PATCH", f"/distributions/{quote_name(args.base_path)}", {"version": None}
    )
    if not args.json:
        out.line(f"{d['base_path']} serves the latest version of {d['repository']} "
                 f"(now {d['serves']})")
    return d


async def distribution_delete(client: Client, out: Output, args) -> object:
    await client.call("DELETE", f"/distributions/{quote_name(args.base_path)}")
    if not args.json:
        out.line(f"deleted distribution {args.base_path}")
    return {"deleted": args.base_path}
