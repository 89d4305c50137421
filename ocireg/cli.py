"""The `ocireg` command: the management API (/api/v1/) from a shell.

    ocireg [--url URL] [--user USER [--password-stdin]] [--json] repo list|show|create|delete …
    ocireg version list NAME | show NAME N | diff NAME N M | delete NAME N
    ocireg rollback NAME N
    ocireg tag copy SRC:TAG DST[:TAG]
    ocireg distribution create|list|show|pin|unpin|delete …
    ocireg gc [--dry-run] | gc-history | scrub

Human tables by default, the API's JSON with `--json`. Errors are one line
on stderr. The exit code says what happened (EXIT_* below).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import quote, urlencode

import attrs
import treq
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError
from twisted.web.client import ResponseNeverReceived

EXIT_OK = 0
#: The server failed (5xx) or answered something this command does not understand.
EXIT_FAILED = 1
#: Bad usage or bad input (400).
EXIT_USAGE = 2
#: What was named does not exist (404).
EXIT_NOT_FOUND = 3
#: The request conflicts with the current state (409), or was refused (403).
EXIT_CONFLICT = 4
#: The server could not be reached.
EXIT_UNREACHABLE = 5

_EXIT_BY_STATUS = {400: EXIT_USAGE, 403: EXIT_CONFLICT, 404: EXIT_NOT_FOUND, 409: EXIT_CONFLICT,
                   413: EXIT_USAGE}

DEFAULT_URL = "http://localhost:5000"


class CommandError(Exception):
    """Ends the command with `message` on stderr and exit code `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@attrs.frozen
class Output:
    """Where the command writes: its results to `out`, its one-line errors to `err`."""

    out: Callable[[str], object] = sys.stdout.write
    err: Callable[[str], object] = sys.stderr.write

    def line(self, text: str = "") -> None:
        self.out(text + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        cells = [[_cell(c) for c in row] for row in rows]
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        for row in [list(headers), *cells]:
            self.line("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return str(value)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _short(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:12]}"


def _counts(c: dict) -> str:
    return f"{c['tags']}t {c['manifests']}m {c['blobs']}b"


@attrs.define
class Client:
    """The management API at `url`, through treq."""

    url: str
    timeout: float
    #: An `Authorization` header value, when the registry wants credentials.
    authorization: str | None = None

    async def call(self, method: str, path: str, body: object = None) -> object:
        kwargs: dict = {"timeout": self.timeout, "persistent": False}
        headers = {}
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        if body is not None:
            kwargs["data"] = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        kwargs["headers"] = headers
        target = self.url.rstrip("/") + "/api/v1" + path
        try:
            response = await treq.request(method, target, **kwargs)
            raw = await response.content()
        except (ConnectError, DNSLookupError, TimeoutError, ResponseNeverReceived) as e:
            raise CommandError(f"cannot reach {self.url}: {_reason(e)}", EXIT_UNREACHABLE) from e
        try:
            document = json.loads(raw) if raw else None
        except ValueError:
            raise CommandError(
                f"{method} {target} answered {response.code} with a body that is not JSON",
                EXIT_FAILED,
            ) from None
        if response.code >= 400:
            raise _api_error(response.code, document)
        return document


def _reason(e: Exception) -> str:
    if isinstance(e, ResponseNeverReceived):
        return "the connection closed before an answer"
    return str(e).strip().rstrip(".") or type(e).__name__


def _api_error(status: int, document: object) -> CommandError:
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return CommandError(f"the server answered {status}", EXIT_FAILED)
    message = f"{error.get('code')}: {error.get('message')}"
    if error.get("field"):
        message += f" (field: {error['field']})"
    return CommandError(message, _EXIT_BY_STATUS.get(status, EXIT_FAILED))


def _name(path: str) -> str:
    # Repository names keep their '/'s in the URL; nothing else needs escaping.
    return quote(path, safe="/")


# Commands: each takes (client, output, args) and writes its result.


async def repo_list(client: Client, out: Output, args) -> object:
    query = {k: v for k, v in (("prefix", args.prefix), ("limit", args.limit),
                               ("after", args.after)) if v}
    document = await client.call("GET", "/repositories/?" + urlencode(query))
    if not args.json:
        out.table(
            ["NAME", "LATEST", "TAGS", "MANIFESTS", "SIZE", "UNIQUE"],
            [(r["name"], r["latest_version"], r["tags"], r["manifests"], _size(r["size"]),
              _size(r["unique_size"])) for r in document["repositories"]],
        )
        if document["next"]:
            out.line(f"(more: --after {document['next']})")
    return document


async def repo_show(client: Client, out: Output, args) -> object:
    r = await client.call("GET", f"/repositories/{_name(args.name)}")
    if not args.json:
        out.table(["FIELD", "VALUE"], [
            ("name", r["name"]),
            ("latest version", r["latest_version"]),
            ("tags", r["tags"]),
            ("manifests", r["manifests"]),
            ("size", _size(r["size"])),
            ("unique size", _size(r["unique_size"])),
            ("retain versions", r["retain_versions"] or "all"),
            ("distributions", ", ".join(r["distributions"]) or "-"),
            ("created", _when(r["created"])),
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
    await client.call("DELETE", f"/repositories/{_name(args.name)}")
    if not args.json:
        out.line(f"deleted repository {args.name}")
    return {"deleted": args.name}


async def version_list(client: Client, out: Output, args) -> object:
    document = await client.call("GET", f"/repositories/{_name(args.name)}/versions/")
    if not args.json:
        out.table(
            ["VERSION", "BASE", "CREATED", "ADDED", "REMOVED", "PRESENT", "REASON"],
            [(v["number"], v["base_version"], _when(v["created"]), _counts(v["added"]),
              _counts(v["removed"]), _counts(v["present"]), v["reason"])
             for v in document["versions"]],
        )
    return document


async def version_show(client: Client, out: Output, args) -> object:
    base = f"/repositories/{_name(args.name)}/versions/{args.number}"
    v = await client.call("GET", base)
    content = await client.call("GET", base + "/content")
    if args.json:
        return {**v, "content": content}
    out.line(f"{args.name} version {v['number']}: {v['reason']} ({_when(v['created'])}), "
             f"base {_cell(v['base_version'])}, holds {_counts(v['present'])}")
    rows = [("tag", t, d) for t, d in sorted(content["tags"].items())]
    rows += [("manifest", "", d) for d in content["manifests"]]
    rows += [("blob", "", d) for d in content["blobs"]]
    out.table(["KIND", "TAG", "DIGEST"], rows)
    return v


async def version_diff(client: Client, out: Output, args) -> object:
    d = await client.call(
        "GET", f"/repositories/{_name(args.name)}/versions/{args.base}/diff/{args.target}"
    )
    if not args.json:
        rows: list[tuple] = []
        rows += [("+", "tag", f"{t} -> {_short(x)}") for t, x in d["tags"]["added"].items()]
        rows += [("-", "tag", f"{t} -> {_short(x)}") for t, x in d["tags"]["removed"].items()]
        rows += [("~", "tag", f"{t}: {_short(m['from'])} -> {_short(m['to'])}")
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
    await client.call("DELETE", f"/repositories/{_name(args.name)}/versions/{args.number}")
    if not args.json:
        out.line(f"deleted version {args.number} of {args.name}; its changes are in the next")
    return {"deleted": args.number}


def _report_change(out: Output, args, change: dict, what: str) -> None:
    if args.json:
        return
    if change["created"]:
        out.line(f"{change['repository']}: version {change['version']} ({what})")
    else:
        out.line(f"{change['repository']}: version {change['version']} already holds that; "
                 "no new version")


async def rollback(client: Client, out: Output, args) -> object:
    change = await client.call(
        "POST", f"/repositories/{_name(args.name)}/rollback", {"version": args.number}
    )
    _report_change(out, args, change, f"rollback to {args.number}")
    return change


def _split_tagged(reference: str, required: bool) -> tuple[str, str | None]:
    name, colon, tag = reference.rpartition(":")
    if not colon or "/" in tag:
        if required:
            raise CommandError(f"{reference!r}: expected REPOSITORY:TAG", EXIT_USAGE)
        return reference, None
    return name, tag


async def tag_copy(client: Client, out: Output, args) -> object:
    source, source_tag = _split_tagged(args.source, required=True)
    target, target_tag = _split_tagged(args.target, required=False)
    target_tag = target_tag or source_tag
    body = {"add_tags": {target_tag: source_tag}, "source": {"repository": source}}
    path = f"/repositories/{_name(target)}/modify"
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
    _report_change(out, args, change, f"tag {target_tag} copied from {source}:{source_tag}")
    return change


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
    d = await client.call("GET", f"/distributions/{_name(args.base_path)}")
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
        "PATCH", f"/distributions/{_name(args.base_path)}", {"version": args.number}
    )
    if not args.json:
        out.line(f"{d['base_path']} serves version {d['serves']} of {d['repository']}, pinned")
    return d


async def distribution_unpin(client: Client, out: Output, args) -> object:
    d = await client.call("PATCH", f"/distributions/{_name(args.base_path)}", {"version": None})
    if not args.json:
        out.line(f"{d['base_path']} serves the latest version of {d['repository']} "
                 f"(now {d['serves']})")
    return d


async def distribution_delete(client: Client, out: Output, args) -> object:
    await client.call("DELETE", f"/distributions/{_name(args.base_path)}")
    if not args.json:
        out.line(f"deleted distribution {args.base_path}")
    return {"deleted": args.base_path}


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors end the command like every other error."""

    def error(self, message: str):
        raise CommandError(f"{message} (see {self.prog} --help)", EXIT_USAGE)


def _number(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number")
    return int(text)


def _collection_row(run: dict) -> list[object]:
    return [_when(run["started"]), "dry run" if run["dry_run"] else "collected",
            run["manifests"], run["blobs"], _size(run["bytes"]), run["stray_files"],
            f"{run['duration']:.2f}s"]


_COLLECTION_HEADERS = ("STARTED", "KIND", "MANIFESTS", "BLOBS", "FREED", "STRAY", "TOOK")


async def gc(client: Client, out: Output, args) -> object:
    run = await client.call("POST", "/gc", {"dry_run": args.dry_run})
    if not args.json:
        would = "would remove" if run["dry_run"] else "removed"
        out.line(f"{would} {run['manifests']} manifests and {run['blobs']} blobs, "
                 f"{_size(run['bytes'])}; {run['stray_files']} stray files")
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
            out.line(json.dumps(report, indent=2, sort_keys=True))
        raise CommandError("the blob store has missing or corrupt blobs", EXIT_CONFLICT)
    return report


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="ocireg", description="Manage an ocireg registry's repositories, "
                  "versions and distributions.")
    top.add_argument("--url", default=os.environ.get("OCIREG_URL", DEFAULT_URL),
                     help=f"the registry (default: $OCIREG_URL or {DEFAULT_URL})")
    top.add_argument("--user", default=os.environ.get("OCIREG_USER"),
                     help="log in as this user (default: $OCIREG_USER); the password comes "
                          "from $OCIREG_PASSWORD, or from standard input with "
                          "--password-stdin")
    top.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    top.add_argument("--json", action="store_true", help="print the API's JSON")
    top.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    groups = top.add_subparsers(dest="group", required=True, parser_class=_Parser)

    def command(sub, name: str, run, help: str, *arguments: tuple[tuple, dict]):
        p = sub.add_parser(name, help=help)
        for flags, options in arguments:
            p.add_argument(*flags, **options)
        p.set_defaults(run=run)

    name = (("name",), {"help": "repository name"})
    number = (("number",), {"type": _number, "help": "version number"})
    limit = (("--limit",), {"type": int, "help": "page size"})
    after = (("--after",), {"help": "the page after this name"})

    repo = groups.add_parser("repo", help="repositories").add_subparsers(
        dest="command", required=True, parser_class=_Parser)
    command(repo, "list", repo_list, "list repositories",
            (("--prefix",), {"help": "names starting with this"}), limit, after)
    command(repo, "show", repo_show, "show a repository", name)
    command(repo, "create", repo_create, "create a repository", name,
            (("--retain",), {"type": int, "help": "keep only the last N versions"}))
    command(repo, "delete", repo_delete, "delete a repository (its content is orphaned)", name)

    version = groups.add_parser("version", help="repository versions").add_subparsers(
        dest="command", required=True, parser_class=_Parser)
    command(version, "list", version_list, "list a repository's versions", name)
    command(version, "show", version_show, "show a version and its content", name, number)
    command(version, "diff", version_diff, "what changed from version N to version M", name,
            (("base",), {"type": _number, "help": "N"}),
            (("target",), {"type": _number, "help": "M"}))
    command(version, "delete", version_delete, "delete a version (folded into the next)",
            name, number)

    command(groups, "rollback", rollback, "make a new version equal to version N", name, number)

    tag = groups.add_parser("tag", help="tags").add_subparsers(
        dest="command", required=True, parser_class=_Parser)
    command(tag, "copy", tag_copy, "copy a tag into a repository (a new version of it)",
            (("source",), {"metavar": "SRC:TAG"}), (("target",), {"metavar": "DST[:TAG]"}))

    dist = groups.add_parser("distribution", help="distributions").add_subparsers(
        dest="command", required=True, parser_class=_Parser)
    base_path = (("base_path",), {"help": "the name pulls use"})
    command(dist, "list", distribution_list, "list distributions",
            (("--repository",), {}), limit, after)
    command(dist, "show", distribution_show, "show a distribution", base_path)
    command(dist, "create", distribution_create, "serve a repository at a base path",
            base_path, (("repository",), {}),
            (("--version",), {"type": _number, "help": "pin to this version"}))
    command(dist, "pin", distribution_pin, "serve version N only", base_path, number)
    command(dist, "unpin", distribution_unpin, "serve the latest version", base_path)
    command(dist, "delete", distribution_delete, "stop serving a base path", base_path)

    command(groups, "gc", gc, "collect garbage now",
            (("--dry-run",), {"action": "store_true", "help": "only report what would go"}))
    command(groups, "gc-history", gc_history, "recent garbage collections")
    command(groups, "scrub", scrub, "verify every blob's bytes (exit 4 if any is bad)")
    return top


def _authorization(args, stdin: TextIO) -> str | None:
    """HTTP Basic credentials for --user, or None to call anonymously."""
    if args.user is None:
        if args.password_stdin:
            raise CommandError("--password-stdin needs --user", EXIT_USAGE)
        return None
    if args.password_stdin:
        password = stdin.readline().rstrip("\n")
    else:
        password = os.environ.get("OCIREG_PASSWORD")
        if password is None:
            raise CommandError(
                "--user needs a password: set OCIREG_PASSWORD or use --password-stdin",
                EXIT_USAGE,
            )
    token = base64.b64encode(f"{args.user}:{password}".encode()).decode()
    return f"Basic {token}"


async def run(argv: Sequence[str], out: Output, stdin: TextIO = sys.stdin) -> int:
    """Run the command `argv`; its exit code. Errors are written as one line."""
    try:
        args = parser().parse_args(argv)
        client = Client(args.url, args.timeout, _authorization(args, stdin))
        result = await args.run(client, out, args)
        if args.json:
            out.line(json.dumps(result, indent=2, sort_keys=True))
        return EXIT_OK
    except CommandError as e:
        out.err(f"ocireg: {e.message}\n")
        return e.code


def main(argv: Sequence[str] | None = None) -> None:
    """The console script's entry point."""
    arguments = sys.argv[1:] if argv is None else list(argv)

    async def _main(reactor) -> None:
        code = await run(arguments, Output())
        if code:
            raise SystemExit(code)

    # --help and --version end through SystemExit(0) from argparse, before any request.
    task.react(lambda reactor: Deferred.fromCoroutine(_main(reactor)))


if __name__ == "__main__":
    main()
