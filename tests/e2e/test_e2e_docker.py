"""docker (CLI 28 + a private dockerd 20.10) against the registry."""

from __future__ import annotations

import pytest

from .expect import assert_served_image, assert_versions
from .oci_layout import DOCKER_MANIFEST, OCILayout

pytestmark = pytest.mark.e2e


def _short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


def test_docker_push_then_pull_after_rmi_gives_same_image_id_and_repo_digest(
    registry, docker, skopeo, tmp_path
):
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("v1", layer_sizes=[4096, 1_000_000])
    ref = f"{registry.host}/e2e/docker:1"
    image_id = docker.load_layout(layout.ref("v1"), ref)
    assert image_id == image.config_digest

    push = docker.push(ref)

    # docker recompresses the layers and writes its own schema2 manifest:
    # the registry must serve exactly that, with the config untouched and
    # the layers decompressing to the original diff_ids
    assert push.pushed and not push.mounted
    assert docker.repo_digests(ref) == [f"{registry.host}/e2e/docker@{push.digest}"]
    summary = assert_served_image(
        skopeo,
        ref,
        tmp_path,
        manifest_digest=push.digest,
        config_digest=image.config_digest,
        diff_ids=image.diff_ids,
    )
    assert summary["manifest"]["mediaType"] == DOCKER_MANIFEST

    docker.rmi(ref)
    assert not docker.has_image(ref)
    pulled = docker.pull(ref)

    assert f"Digest: {push.digest}" in pulled.out
    assert docker.image_id(ref) == image.config_digest
    assert docker.repo_digests(ref) == [f"{registry.host}/e2e/docker@{push.digest}"]
    docker.rmi(ref)
    content = assert_versions(registry, "e2e/docker", ["push tag 1"])
    assert content["tags"] == {"1": push.digest}


def test_docker_push_to_second_repository_mounts_layers(registry, docker, skopeo, tmp_path):
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("v1", layer_sizes=[4096, 300_000, 2048])
    first = f"{registry.host}/e2e/first:1"
    second = f"{registry.host}/team/second:1"
    docker.load_layout(layout.ref("v1"), first)
    first_push = docker.push(first)
    docker.tag(first, second)

    second_push = docker.push(second)

    # docker knows it pushed these layers to e2e/first: it mounts every one
    assert second_push.mounted == {_short(d): "e2e/first" for d in image.diff_ids}, (
        second_push.output
    )
    assert second_push.digest == first_push.digest
    assert_served_image(
        skopeo,
        second,
        tmp_path,
        manifest_digest=second_push.digest,
        config_digest=image.config_digest,
        diff_ids=image.diff_ids,
    )

    docker.rmi(first, second)
    docker.pull(second)
    assert docker.image_id(second) == image.config_digest
    assert docker.repo_digests(second) == [f"{registry.host}/team/second@{second_push.digest}"]
    docker.rmi(second)


def test_docker_pulls_multiarch_index_pushed_by_skopeo(registry, docker, skopeo, tmp_path):
    """docker resolves the tag with HEAD (Docker-Content-Digest), fetches the
    index by digest, picks linux/amd64 and records the index digest."""
    layout = OCILayout(tmp_path / "layout")
    index = layout.add_index("multi")
    ref = f"{registry.host}/e2e/multi:1"
    skopeo.push(layout.ref("multi"), f"docker://{ref}", all=True)

    pulled = docker.pull(ref)

    assert f"Digest: {index.digest}" in pulled.out
    assert docker.image_id(ref) == index.child("amd64").config_digest
    assert docker.repo_digests(ref) == [f"{registry.host}/e2e/multi@{index.digest}"]
    docker.rmi(ref)
