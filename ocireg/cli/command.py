"""The `ocireg` command line: its parser, its log-in, and running one command."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from twisted.internet import task
from twisted.internet.defer import Deferred

from ocireg.cli.client import DEFAULT_URL, EXIT_OK, EXIT_USAGE, Client, CommandError
from ocireg.cli.distributions import (
    distribution_create,
    distribution_delete,
    distribution_list,
    distribution_pin,
    distribution_show,
    distribution_unpin,
)
from ocireg.cli.housekeeping import gc, gc_history, scrub
from ocireg.cli.output import Output
from ocireg.cli.repositories import repo_create, repo_delete, repo_list, repo_show
from ocireg.cli.versions import (
    rollback,
    tag_copy,
    version_delete,
    version_diff,
    version_list,
    version_show,
)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors end the command like every other error."""

    def error(self, message: str):
        raise CommandError(f"{message} (see {self.prog} --help)", EXIT_USAGE)


def _number(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number")
    return int(text)


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
