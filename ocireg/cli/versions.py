"""A repository's versions, and new versions made by hand.

`ocireg version list|show|diff|delete`, `ocireg rollback`, `ocireg tag copy`.
"""

from __future__ import annotations

from ocireg.cli.client import EXIT_NOT_FOUND, EXIT_USAGE, Client, CommandError, quote_name
from ocireg.cli.output import Output, cell, counts, short_digest, when


async def version_list(client: Client, out: Output, args) -> object:
    document = await client.call("GET", f"/repositories/{quote_name(args.name)}/versions/")
    if not args.json:
        out.table(
            ["VERSION", "BASE", "CREATED", "ADDED", "REMOVED", "PRESENT", "REASON"],
            [(v["number"], v["base_version"], when(v["created"]), counts(v["added"]),
              counts(v["removed"]), counts(v["present"]), v["reason"])
             for v in document["versions"]],
        )
    return document


async def version_show(client: Client, out: Output, args) -> object:
    base = f"/repositories/{quote_name(args.name)}/versions/{args.number}"
    v = await client.call("GET", base)
    content = await client.call("GET", base + "/content")
    if args.json:
        return {**v, "content": content}
    out.line(f"{args.name} version {v['number']}: {v['reason']} ({when(v['created'])}), "
             f"base {cell(v['base_version'])}, holds {counts(v['present'])}")
    rows = [("tag", t, d) for t, d in sorted(content["tags"].items())]
    rows += [("manifest", "", d) for d in content["manifests"]]
    rows += [("blob", "", d) for d in content["blobs"]]
    out.table(["KIND", "TAG", "DIGEST"], rows)
    return v


async def version_diff(client: Client, out: Output, args) -> object:
    d = await client.call(
        "GET", f"/repositories/{quote_name(args.name)}/versions/{args.base}/diff/{args.target}"
    )
    if not args.json:
        rows: list[tuple] = []
        rows += [("+", "tag", f"{t} -> {short_digest(x)}") for t, x in d["tags"]["added"].items()]
        rows += [("-", "tag", f"{t} -> {short_digest(x)}") for t, x in d["tags"]["removed"].items()]
        rows += [("~", "tag", f"{t}: {short_digest(m['from'])} -> {short_digest(m['to'])}")
                 for t, m in d["tags"]["moved"].items()]
        for kind in ("manifests", "blobs"):
            rows += [("+", kind[:-1], x) for x in d[kind]["added"]]
            rows += [("-", kind[:-1], x) for x in d[kind]["removed"]]
        if rows:
            out.table(["", "KIND", "CHANGE"], rows)
        else:
            out.line(f"versions {args.base} and {args.target} hold the same content")
    return d


async def version_delete(client: Client, out: Output, args) -> object:
    await client.call("DELETE", f"/repositories/{quote_name(args.name)}/versions/{args.number}")
    if not args.json:
        out.line(f"deleted version {args.number} of {args.name}; its changes are in the next")
    return {"deleted": args.number}


def report_change(out: Output, args, change: dict, what: str) -> None:
    if args.json:
        return
    if change["created"]:
        out.line(f"{change['repository']}: version {change['version']} ({what})")
    else:
        out.line(f"{change['repository']}: version {change['version']} already holds that; "
                 "no new version")


async def rollback(client: Client, out: Output, args) -> object:
    change = await client.call(
        "POST", f"/repositories/{quote_name(args.name)}/rollback", {"version": args.number}
    )
    report_change(out, args, change, f"rollback to {args.number}")
    return change


def split_tagged(reference: str, required: bool) -> tuple[str, str | None]:
    name, colon, tag = reference.rpartition(":")
    if not colon or "/" in tag:
        if required:
            raise CommandError(f"{reference!r}: expected REPOSITORY:TAG", EXIT_USAGE)
        return reference, None
    return name, tag


async def tag_copy(client: Client, out: Output, args) -> object:
    source, source_tag = split_tagged(args.source, required=True)
    target, target_tag = split_tagged(args.target, required=False)
    target_tag = target_tag or source_tag
    body = {"add_tags": {target_tag: source_tag}, "source": {"repository": source}}
    path = f"/repositories/{quote_name(target)}/modify"
    try:
        change = await client.call("POST", path, body)
    except CommandError as e:
        if e.code != EXIT_NOT_FOUND or "NAME_UNKNOWN" not in e.message or target not in (
            e.message
        ):
            raise
        # Copying into a repository that does not exist yet creates it, as a push would.
        await client.call("POST", "/repositories/", {"name": target})
        change = await client.call("POST", path, body)
    report_change(out, args, change, f"tag {target_tag} copied from {source}:{source_tag}")
    return change
