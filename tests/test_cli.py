"""The `ocireg` command (ocireg.cli.run) against an in-process registry: tables,
--json, exit codes, and errors as one line."""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import subprocess
import sys
import time

import pytest
import pytest_twisted

from ocireg import cli, version
from ocireg.digest import Digest
from tests.api_helpers import make_image, push_blob, push_image
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
    assert out.splitlines()[1].split()[3:5] == ["dry", "run"]


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


async def ocireg_answering(server_url: str, answer: str, *args: str) -> tuple[int, str, str]:
    """`ocireg` with `answer` as its standard input (a question's reply)."""
    out: list[str] = []
    err: list[str] = []
    code = await cli.run(["--url", server_url, "--timeout", "10", *args],
                         cli.Output(out.append, err.append), io.StringIO(answer))
    return code, "".join(out), "".join(err)


@pytest_twisted.ensureDeferred
async def test_repo_delete_asks_first_and_yes_skips_the_question(server):
    await pushed(server)
    code, out, err = await ocireg_answering(server.url, "", "repo", "delete", "team/app")
    assert (code, out) == (cli.EXIT_FAILED, "")
    assert err.startswith("delete repository team/app with its 3 versions and its "
                          "distributions (team/app)? [y/N] \n")
    assert err.endswith("ocireg: repository team/app not deleted (answer y, or pass --yes)\n")
    code, _, err = await ocireg_answering(server.url, "n\n", "repo", "delete", "team/app")
    assert code == cli.EXIT_FAILED
    assert (await ocireg(server.url, "repo", "show", "team/app"))[0] == 0

    code, out, _ = await ocireg_answering(server.url, "y\n", "repo", "delete", "team/app")
    assert (code, out) == (0, "deleted repository team/app\n")
    await pushed(server)
    code, out, err = await ocireg_answering(server.url, "", "repo", "delete", "--yes", "team/app")
    assert (code, out, err) == (0, "deleted repository team/app\n", "")
    assert (await ocireg(server.url, "repo", "show", "team/app"))[0] == cli.EXIT_NOT_FOUND


@pytest_twisted.ensureDeferred
async def test_tag_list_and_delete_through_the_registry_api(server):
    first, second = await pushed(server)
    await push_image(server, "team/app", first, "0.9")
    code, out, err = await ocireg(server.url, "tag", "list", "team/app")
    assert (code, out, err) == (0, "0.9\n1.0\nlatest\n", "")
    code, out, _ = await ocireg(server.url, "tag", "list", "team/app", "--limit", "2")
    assert out == "0.9\n1.0\n(more: --after 1.0)\n"
    code, out, _ = await ocireg(server.url, "tag", "list", "team/app", "--after", "1.0", "--json")
    assert json.loads(out) == {"name": "team/app", "tags": ["latest"]}

    code, out, err = await ocireg(server.url, "tag", "delete", "team/app:1.0")
    assert (code, err) == (0, "")
    assert (await ocireg(server.url, "tag", "list", "team/app"))[1] == "0.9\nlatest\n"
    content = await server.registry.version_content("team/app")
    assert content["tag"] == {"0.9": first.digest, "latest": second.digest}

    code, _, err = await ocireg(server.url, "tag", "delete", "team/app:1.0")
    assert code == cli.EXIT_NOT_FOUND and "MANIFEST_UNKNOWN" in err, err
    code, _, err = await ocireg(server.url, "tag", "list", "team/none")
    assert code == cli.EXIT_NOT_FOUND and "NAME_UNKNOWN" in err, err
    code, _, err = await ocireg(server.url, "tag", "delete", f"team/app@{first.digest}")
    assert code == cli.EXIT_USAGE and "a tag, not a digest" in err


@pytest_twisted.ensureDeferred
async def test_repo_set_changes_retention(server):
    await pushed(server)
    code, out, err = await ocireg(server.url, "repo", "set", "team/app", "--retain", "1")
    assert (code, err) == (0, "")
    assert "retain versions  1" in out
    code, out, _ = await ocireg(server.url, "--json", "repo", "set", "team/app", "--retain", "all")
    assert json.loads(out)["retain_versions"] is None
    code, _, err = await ocireg(server.url, "repo", "set", "team/app", "--retain", "0")
    assert code == cli.EXIT_USAGE and "neither a number of versions nor 'all'" in err


@pytest_twisted.ensureDeferred
async def test_staging_show_and_discard(server):
    await push_image(server, "team/app", make_image(), "1.0")
    # A blob uploaded and never tagged: it waits in staging.
    await push_blob(server, "team/app")
    code, out, err = await ocireg(server.url, "staging", "show", "team/app")
    assert (code, err) == (0, "")
    assert out.startswith("team/app staging: 1 items, 0 uploads in progress; oldest staged ")
    assert out.splitlines()[1].split() == ["KIND", "DIGEST", "STAGED"]
    code, out, _ = await ocireg(server.url, "staging", "discard", "team/app")
    assert (code, out) == (0, "team/app: discarded 1 staged items\n")
    code, out, _ = await ocireg(server.url, "--json", "staging", "show", "team/app")
    assert json.loads(out)["content"] == []


@pytest.fixture
def zone_plus_3():
    """The process's local time zone is XYZ, three hours east of UTC, for the test."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "XYZ-3"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest_twisted.ensureDeferred
async def test_times_are_local_with_their_zone_in_tables_and_rfc3339_in_json(server, zone_plus_3):
    await pushed(server)
    code, out, _ = await ocireg(server.url, "--json", "version", "list", "team/app")
    created = json.loads(out)["versions"][1]["created"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created), created
    utc = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    assert abs(utc.timestamp() - time.time()) < 60
    local = (utc + datetime.timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S")

    code, out, _ = await ocireg(server.url, "version", "list", "team/app")
    header, _, first = out.splitlines()[:3]
    assert header.split()[:3] == ["VERSION", "BASE", "CREATED"]
    assert first.split()[2:5] == local.split() + ["XYZ"]

    code, out, _ = await ocireg(server.url, "--json", "repo", "show", "team/app")
    assert json.loads(out)["created"].endswith("Z")
    code, out, _ = await ocireg(server.url, "--json", "rollback", "team/app", "1")
    # `created` of a change says whether a version was made: not a time.
    assert json.loads(out)["created"] is True
