"""Versions a user steers, with real images: skopeo pushes twice, then the
management API and the `ocireg` command list, diff, roll back and pin, and
skopeo pulls back exactly the pinned and the rolled-back images."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from tests.support import REPO_ROOT, ocireg_environment

from .clients import ClientError
from .expect import assert_served_built_image, repository_versions
from .oci_layout import OCILayout

pytestmark = [pytest.mark.e2e, pytest.mark.reference_differs("no management API")]


def api(registry, method: str, path: str, body: object = None) -> tuple[int, dict | None]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{registry.url}/api/v1{path}", data=data, method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def ocireg(registry, *args: str) -> subprocess.CompletedProcess:
    """The `ocireg` command against `registry`, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "ocireg.cli", "--url", registry.url, *args],
        env=ocireg_environment(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def pushed_twice(registry, skopeo, tmp_path):
    """e2e/app:latest pushed as image one (version 1), then as image two (version 2)."""
    layout = OCILayout(tmp_path / "layout")
    one = layout.add_image("one", layer_sizes=[4096, 20_000])
    two = layout.add_image("two", layer_sizes=[8192, 30_000])
    assert skopeo.push(layout.ref("one"), f"docker://{registry.host}/e2e/app:latest") == one.digest
    assert skopeo.push(layout.ref("two"), f"docker://{registry.host}/e2e/app:latest") == two.digest
    return one, two


def test_api_diffs_rolls_back_and_pins_what_skopeo_pulls(registry, skopeo, tmp_path, pushed_twice):
    one, two = pushed_twice
    assert [v["reason"] for v in repository_versions(registry, "e2e/app")] == [
        "created", "push tag latest", "push tag latest"]

    status, diff = api(registry, "GET", "/repositories/e2e/app/versions/1/diff/2")
    assert status == 200
    assert diff["tags"]["moved"] == {"latest": {"from": one.digest, "to": two.digest}}
    # Moving a tag leaves the old manifest in the repository, by digest.
    assert diff["manifests"] == {"added": [two.digest], "removed": []}
    assert diff["blobs"]["added"] == sorted([two.config_digest, *two.layer_digests])

    # Pin a new distribution to version 1: it serves image one, whatever comes next.
    status, pinned = api(registry, "POST", "/distributions/",
                         {"base_path": "e2e/app-stable", "repository": "e2e/app", "version": 1})
    assert status == 201, pinned
    assert_served_built_image(skopeo, f"{registry.host}/e2e/app-stable:latest", tmp_path, one)
    assert_served_built_image(skopeo, f"{registry.host}/e2e/app:latest", tmp_path, two)

    # A push to the pinned distribution is refused, saying why.
    with pytest.raises(ClientError) as refused:
        skopeo.push(f"docker://{registry.host}/e2e/app:latest",
                    f"docker://{registry.host}/e2e/app-stable:other")
    assert "denied" in refused.value.stderr.lower(), refused.value.stderr
    assert "pinned" in refused.value.stderr, refused.value.stderr

    # Roll the repository back to version 1: latest is image one again.
    status, change = api(registry, "POST", "/repositories/e2e/app/rollback", {"version": 1})
    assert (status, change["version"]) == (201, 3), change
    assert_served_built_image(skopeo, f"{registry.host}/e2e/app:latest", tmp_path, one)
    with pytest.raises(ClientError):
        skopeo.inspect_raw(f"docker://{registry.host}/e2e/app@{two.digest}")

    # Pinning the repository's own distribution to version 2 serves image two again.
    status, _ = api(registry, "PATCH", "/distributions/e2e/app", {"version": 2})
    assert status == 200
    assert_served_built_image(skopeo, f"{registry.host}/e2e/app:latest", tmp_path, two)


def test_command_lists_diffs_rolls_back_and_pins_what_skopeo_pulls(
    registry, skopeo, tmp_path, pushed_twice
):
    one, two = pushed_twice

    listed = ocireg(registry, "version", "list", "e2e/app")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:2] == ["VERSION", "BASE"]
    assert [line.split()[0] for line in lines[1:]] == ["0", "1", "2"]
    assert lines[2].endswith("push tag latest")

    diff = ocireg(registry, "version", "diff", "e2e/app", "1", "2")
    assert diff.returncode == 0, diff.stderr
    assert f"latest: {one.digest[:19]} -> {two.digest[:19]}" in diff.stdout
    assert f"+  manifest  {two.digest}" in diff.stdout

    as_json = ocireg(registry, "--json", "version", "diff", "e2e/app", "1", "2")
    assert json.loads(as_json.stdout)["manifests"]["added"] == [two.digest]

    rolled = ocireg(registry, "rollback", "e2e/app", "1")
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout.strip() == "e2e/app: version 3 (rollback to 1)"
    assert_served_built_image(skopeo, f"{registry.host}/e2e/app:latest", tmp_path, one)

    created = ocireg(registry, "distribution", "create", "e2e/app-two", "e2e/app",
                     "--version", "2")
    assert created.returncode == 0, created.stderr
    assert_served_built_image(skopeo, f"{registry.host}/e2e/app-two:latest", tmp_path, two)

    pinned = ocireg(registry, "distribution", "pin", "e2e/app", "2")
    assert pinned.returncode == 0, pinned.stderr
    assert_served_built_image(skopeo, f"{registry.host}/e2e/app:latest", tmp_path, two)
    unpinned = ocireg(registry, "distribution", "unpin", "e2e/app")
    assert unpinned.returncode == 0, unpinned.stderr
    assert_served_built_image(skopeo, f"{registry.host}/e2e/app:latest", tmp_path, one)

    copied = ocireg(registry, "tag", "copy", "e2e/app:latest", "e2e/copy:stable")
    assert copied.returncode == 0, copied.stderr
    assert_served_built_image(skopeo, f"{registry.host}/e2e/copy:stable", tmp_path, one)

    listing = ocireg(registry, "--json", "distribution", "list")
    assert {d["base_path"]: d["serves"] for d in json.loads(listing.stdout)["distributions"]} == {
        "e2e/app": 3, "e2e/app-two": 2, "e2e/copy": 1}
