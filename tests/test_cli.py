"""The `ocireg` command (ocireg.cli.run) against an in-process registry: tables,
--json, exit codes, and errors as one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest_twisted

from ocireg import cli, version
from ocireg.digest import Digest
from tests.api_helpers import make_image, push_image
from tests.support import REPO_ROOT, free_port, ocireg_environment


async def ocireg(server_url: str, *args: str) -> tuple[int, str, str]:
    out: list[str] = []
    err: list[str] = []
    code = await cli.run(["--url", server_url, "--timeout", "10", *args],
                         cli.Output(out.append, err.append))
    return code, "".join(out), "".join(err)


async def pushed(server):
    first, second = make_image(), make_image()
    await push_image(server, "team/app", first, "1.0")
    await push_image(server, "team/app", second, "latest")
    return first, second


@pytest_twisted.ensureDeferred
async def test_repo_list_and_show_print_tables(server):
    await pushed(server)
    code, out, err = await ocireg(server.url, "repo", "list")
    assert (code, err) == (0, "")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "LATEST", "TAGS", "MANIFESTS", "SIZE", "UNIQUE"]
    assert row.split()[:4] == ["team/app", "2", "2", "2"]
    code, out, _ = await ocireg(server.url, "repo", "show", "team/app")
    assert code == 0
    assert "latest version   2" in out


@pytest_twisted.ensureDeferred
async def test_repo_list_pages_with_after(server):
    for name in ("a/one", "a/three", "a/two"):
        assert (await ocireg(server.url, "repo", "create", name))[0] == 0
    code, out, _ = await ocireg(server.url, "repo", "list", "--limit", "2")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["a/one", "a/three", "(more:"]
    code, out, _ = await ocireg(server.url, "repo", "list", "--limit", "2", "--after", "a/three")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["a/two"]


@pytest_twisted.ensureDeferred
async def test_json_output_is_the_api_document(server):
    first, second = await pushed(server)
    code, out, _ = await ocireg(server.url, "--json", "version", "diff", "team/app", "1", "2")
    assert code == 0
    assert json.loads(out)["tags"]["added"] == {"latest": second.digest}


@pytest_twisted.ensureDeferred
async def test_rollback_and_tag_copy_report_the_new_version(server):
    first, _ = await pushed(server)
    code, out, _ = await ocireg(server.url, "rollback", "team/app", "1")
    assert (code, out) == (0, "team/app: version 3 (rollback to 1)\n")
    code, out, _ = await ocireg(server.url, "rollback", "team/app", "1")
    assert code == 0 and "no new version" in out
    code, out, err = await ocireg(server.url, "tag", "copy", "team/app:1.0", "team/copy")
    assert code == 0, err
    content = await server.registry.version_content("team/copy")
    assert content["tag"] == {"1.0": first.digest}


@pytest_twisted.ensureDeferred
async def test_distribution_pin_and_unpin(server):
    await pushed(server)
    code, out, _ = await ocireg(server.url, "distribution", "pin", "team/app", "1")
    assert (code, out) == (0, "team/app serves version 1 of team/app, pinned\n")
    code, out, _ = await ocireg(server.url, "distribution", "list")
    assert out.splitlines()[1].split() == ["team/app", "team/app", "1", "1"]
    code, out, _ = await ocireg(server.url, "distribution", "unpin", "team/app")
    assert code == 0 and "latest version" in out


@pytest_twisted.ensureDeferred
async def test_exit_codes_say_what_happened_with_one_line_errors(server):
    await pushed(server)
    cases = [
        (("repo", "show", "team/none"), cli.EXIT_NOT_FOUND, "NAME_UNKNOWN"),
        (("version", "show", "team/app", "9"), cli.EXIT_NOT_FOUND, "VERSION_UNKNOWN"),
        (("version", "delete", "team/app", "2"), cli.EXIT_CONFLICT, "CONFLICT"),
        (("repo", "create", "Bad"), cli.EXIT_USAGE, "field: name"),
        (("rollback", "team/app", "x"), cli.EXIT_USAGE, "not a version number"),
        (("tag", "copy", "team/app", "team/b"), cli.EXIT_USAGE, "REPOSITORY:TAG"),
        (("frobnicate",), cli.EXIT_USAGE, "invalid choice"),
    ]
    for args, expected, text in cases:
        code, out, err = await ocireg(server.url, *args)
        assert code == expected, (args, err)
        assert out == ""
        assert err.startswith("ocireg: ") and err.count("\n") == 1 and text in err, (args, err)


@pytest_twisted.ensureDeferred
async def test_an_unreachable_registry_is_its_own_exit_code():
    code, out, err = await ocireg(f"http://127.0.0.1:{free_port()}", "repo", "list")
    assert code == cli.EXIT_UNREACHABLE
    assert err.startswith("ocireg: cannot reach http://127.0.0.1:") and err.count("\n") == 1


@pytest_twisted.ensureDeferred
async def test_gc_dry_run_then_history(server):
    code, out, err = await ocireg(server.url, "gc", "--dry-run")
    assert (code, err) == (0, "")
    assert out.startswith("would remove 0 manifests and 0 blobs")
    code, out, _ = await ocireg(server.url, "gc-history")
    assert code == 0
    assert out.splitlines()[1].split()[2:4] == ["dry", "run"]


@pytest_twisted.ensureDeferred
async def test_scrub_exits_4_and_names_a_missing_blob(server):
    first, _ = await pushed(server)
    layer = first.document["layers"][0]["digest"]
    await server.registry.blobs.delete_blob(Digest.parse(layer))

    code, out, err = await ocireg(server.url, "scrub")

    assert code == cli.EXIT_CONFLICT
    assert f"missing  {layer}" in out
    assert err == "ocireg: the blob store has missing or corrupt blobs\n"


@pytest_twisted.ensureDeferred
async def test_options_work_after_the_command_and_win_over_those_before(server):
    await pushed(server)
    orders = (("repo", "list", "--json"), ("repo", "--json", "list"), ("--json", "repo", "list"))
    for args in orders:
        code, out, err = await ocireg(server.url, *args)
        assert (code, err) == (0, ""), args
        assert [r["name"] for r in json.loads(out)["repositories"]] == ["team/app"], args
    # ocireg() puts a working --url first: one given after the command replaces it.
    code, _, err = await ocireg(server.url, "repo", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == cli.EXIT_UNREACHABLE, err


@pytest_twisted.ensureDeferred
async def test_bare_command_and_bare_group_print_their_help():
    out: list[str] = []
    err: list[str] = []
    assert await cli.run([], cli.Output(out.append, err.append)) == 0
    text = "".join(out)
    assert text.startswith("usage: ocireg ") and "distribution" in text and "--version" in text
    out.clear()
    assert await cli.run(["version"], cli.Output(out.append, err.append)) == 0
    text = "".join(out)
    assert text.startswith("usage: ocireg version ") and "diff" in text
    assert err == []


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=ocireg_environment(), capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT)


def test_the_installed_command_prints_help_and_versions():
    bare = _run(sys.executable, "-m", "ocireg.cli")
    assert (bare.returncode, bare.stderr) == (0, "")
    assert bare.stdout.startswith("usage: ocireg ")

    cli_version = _run(sys.executable, "-m", "ocireg.cli", "--version")
    assert (cli_version.returncode, cli_version.stdout) == (0, f"ocireg {version()}\n")

    daemon_version = _run(sys.executable, "-m", "twisted", "ocireg", "--version")
    assert daemon_version.returncode == 0
    assert daemon_version.stdout.startswith(f"ocireg {version()} (Twisted ")
