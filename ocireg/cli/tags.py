"""`ocireg tag list|delete`: tags as pulls see them, through the registry API (/v2/)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from ocireg.cli.client import EXIT_USAGE, Client, CommandError, quote_name
from ocireg.cli.output import Output
from ocireg.cli.versions import split_tagged


def _next_tag(headers: dict[str, list[str]]) -> str | None:
    """The `last` of the next page that a `Link: <…>; rel="next"` header names, if any."""
    for link in headers.get("link", []):
        target, _, relation = link.partition(";")
        if 'rel="next"' in relation.replace(" ", ""):
            found = parse_qs(urlsplit(target.strip().strip("<>")).query).get("last")
            if found:
                return found[0]
    return None


async def tag_list(client: Client, out: Output, args) -> object:
    query = {k: v for k, v in (("n", args.limit), ("last", args.after)) if v}
    path = f"/v2/{quote_name(args.name)}/tags/list"
    document, headers = await client.request("GET", path + ("?" + urlencode(query) if query
                                                            else ""))
    following = _next_tag(headers)
    if not args.json:
        for tag in document["tags"] or []:
            out.line(tag)
        if following:
            out.line(f"(more: --after {following})")
    return document


async def tag_delete(client: Client, out: Output, args) -> object:
    name, tag = split_tagged(args.reference, required=True)
    if "@" in name:
        raise CommandError(f"{args.reference!r}: expected REPOSITORY:TAG (a tag, not a digest)",
                           EXIT_USAGE)
    await client.request("DELETE", f"/v2/{quote_name(name)}/manifests/{quote_name(tag)}")
    if not args.json:
        out.line(f"deleted tag {tag} of {name} (a new version without it)")
    return {"repository": name, "deleted": tag}
