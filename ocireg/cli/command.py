"""The `ocireg` command line: its parser, its log-in, and running one command."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import attrs
from twisted.internet import task
from twisted.internet.defer import Deferred

from ocireg import version
from ocireg.cli.client import (
    DEFAULT_URL,
    EXIT_OK,
    EXIT_USAGE,
    Client,
    CommandError,
    check_url,
    make_agent,
    tls_policy,
)
from ocireg.cli.distributions import (
    distribution_create,
    distribution_delete,
    distribution_list,
    distribution_pin,
    distribution_show,
    distribution_unpin,
)
from ocireg.cli.housekeeping import gc, gc_history, scrub
from ocireg.cli.output import Output, with_rfc3339_times
from ocireg.cli.repositories import (
    repo_create,
    repo_delete,
    repo_list,
    repo_set,
    repo_show,
    staging_discard,
    staging_show,
)
from ocireg.cli.tags import tag_delete, tag_list
from ocireg.cli.versions import (
    rollback,
    tag_copy,
    version_delete,
    version_diff,
    version_list,
    version_show,
)


class _Shown(Exception):
    """Ends the command successfully after printing `text` (--help, --version, bare groups)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _HelpAction(argparse.Action):
    def __init__(self, option_strings, dest, help=None) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        raise _Shown(parser.format_help())


class _VersionAction(_HelpAction):
    def __call__(self, parser, namespace, values, option_string=None):
        raise _Shown(f"ocireg {version()}\n")


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors end the command like every other error, and help is
    written where the command writes (not to sys.stdout behind its back)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["add_help"] = False
        super().__init__(*args, **kwargs)
        self.add_argument("-h", "--help", action=_HelpAction, help="show this help")

    def error(self, message: str):
        raise CommandError(f"{message} (see {self.prog} --help)", EXIT_USAGE)


def _number(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number")
    return int(text)


def _retain(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number of versions nor 'all'")
    return int(text)


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return seconds


def _common_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    """The options every command takes, before or after the command's name.

    Given after the name (`defaults` false), an option only counts when it is
    there, so that it does not undo the same option given before the name.
    """

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    p.add_argument("--url", default=default(os.environ.get("OCIREG_URL", DEFAULT_URL)),
                   help=f"the registry (default: $OCIREG_URL or {DEFAULT_URL})")
    p.add_argument("--user", default=default(os.environ.get("OCIREG_USER")),
                   help="log in as this user (default: $OCIREG_USER); the password comes "
                        "from $OCIREG_PASSWORD, or from standard input with --password-stdin")
    p.add_argument("--password-stdin", action="store_true", default=default(False),
                   help="read the password from the first line of standard input")
    p.add_argument("--json", action="store_true", default=default(False),
                   help="print the API's JSON, with times in RFC 3339 (UTC)")
    p.add_argument("--timeout", type=_seconds, default=default(30.0),
                   help="seconds to wait for each answer (default 30)")
    p.add_argument("--cacert", default=default(None), metavar="FILE",
                   help="trust the certificates (PEM) in FILE for https URLs, "
                        "besides the system's")
    p.add_argument("--insecure", action="store_true", default=default(False),
                   help="do not check the https certificate (testing only)")


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="ocireg", description="Manage an ocireg registry's repositories, "
                  "versions and distributions.")
    _common_options(top, defaults=True)
    top.add_argument("--version", action=_VersionAction, help="print ocireg's version")
    top.set_defaults(usage=top)
    groups = top.add_subparsers(dest="group", metavar="COMMAND", parser_class=_Parser)

    def group(name: str, help: str) -> argparse._SubParsersAction:
        p = groups.add_parser(name, help=help)
        _common_options(p, defaults=False)
        p.set_defaults(usage=p)
        return p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(sub, name: str, run, help: str, *arguments: tuple[tuple, dict]):
        p = sub.add_parser(name, help=help)
        _common_options(p, defaults=False)
        for flags, options in arguments:
            p.add_argument(*flags, **options)
        p.set_defaults(run=run)

    name = (("name",), {"help": "repository name"})
    number = (("number",), {"type": _number, "help": "version number"})
    limit = (("--limit",), {"type": int, "help": "page size"})
    after = (("--after",), {"help": "the page after this name"})

    repo = group("repo", "repositories")
    command(repo, "list", repo_list, "list repositories",
            (("--prefix",), {"help": "names starting with this"}), limit, after)
    command(repo, "show", repo_show, "show a repository", name)
    command(repo, "create", repo_create, "create a repository", name,
            (("--retain",), {"type": int, "help": "keep only the last N versions"}))
    command(repo, "set", repo_set, "change a repository's settings", name,
            (("--retain",), {"type": _retain, "required": True, "metavar": "N|all",
                             "help": "keep only the last N versions, or all of them"}))
    command(repo, "delete", repo_delete, "delete a repository (its content is orphaned); "
            "asks first", name,
            (("--yes", "-y"), {"action": "store_true", "help": "do not ask"}))

    stage = group("staging", "what pushes uploaded that no tag reaches yet")
    command(stage, "show", staging_show, "show a repository's staging version", name)
    command(stage, "discard", staging_discard, "discard a repository's staged content", name)

    version = group("version", "repository versions")
    command(version, "list", version_list, "list a repository's versions", name)
    command(version, "show", version_show, "show a version and its content", name, number)
    command(version, "diff", version_diff, "what changed from version N to version M", name,
            (("base",), {"type": _number, "help": "N"}),
            (("target",), {"type": _number, "help": "M"}))
    command(version, "delete", version_delete, "delete a version (folded into the next)",
            name, number)

    command(groups, "rollback", rollback, "make a new version equal to version N", name, number)

    tag = group("tag", "tags")
    command(tag, "copy", tag_copy, "copy a tag into a repository (a new version of it)",
            (("source",), {"metavar": "SRC:TAG"}), (("target",), {"metavar": "DST[:TAG]"}))
    command(tag, "list", tag_list, "list a repository's tags (as pulls see them)", name,
            (("--limit",), {"type": int, "help": "page size"}),
            (("--after",), {"help": "the page after this tag"}))
    command(tag, "delete", tag_delete, "delete a tag (a new version without it)",
            (("reference",), {"metavar": "NAME:TAG"}))

    dist = group("distribution", "distributions")
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


async def run(
    argv: Sequence[str], out: Output, stdin: TextIO = sys.stdin, reactor: object = None
) -> int:
    """Run the command `argv`; its exit code. Errors are written as one line."""
    try:
        args = parser().parse_args(argv)
        if getattr(args, "run", None) is None:
            # `ocireg` or `ocireg repo` alone: what can follow.
            raise _Shown(args.usage.format_help())
        if reactor is None:
            from twisted.internet import reactor
        client = Client(
            check_url(args.url), args.timeout, _authorization(args, stdin),
            make_agent(reactor, tls_policy(args.cacert, args.insecure)), reactor,
        )
        result = await args.run(client, attrs.evolve(out, answer=stdin.readline), args)
        if args.json:
            out.line(json.dumps(with_rfc3339_times(result), indent=2, sort_keys=True))
        return EXIT_OK
    except _Shown as e:
        out.out(e.text)
        return EXIT_OK
    except CommandError as e:
        out.err(f"ocireg: {e.message}\n")
        return e.code


def main(argv: Sequence[str] | None = None) -> None:
    """The console script's entry point."""
    arguments = sys.argv[1:] if argv is None else list(argv)

    async def _main(reactor) -> None:
        code = await run(arguments, Output(), reactor=reactor)
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: Deferred.fromCoroutine(_main(reactor)))
