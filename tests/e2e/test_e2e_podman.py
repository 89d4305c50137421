"""podman 4.3 (vfs store under a temp --root) against the registry."""

from __future__ import annotations

import pytest

from .expect import (
    assert_served_built_image,
    assert_served_image,
    assert_served_index,
    assert_versions,
)
from .oci_layout import OCI_INDEX, OCILayout

pytestmark = pytest.mark.e2e


def test_podman_push_then_pull_after_rmi_gives_same_image(registry, podman, skopeo, tmp_path):
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("v1", layer_sizes=[4096, 500_000])
    ref = f"{registry.host}/e2e/podman:1"
    image_id = podman.load_layout(layout.ref("v1"), ref)
    assert "sha256:" + image_id == image.config_digest

    pushed = podman.push(ref, ref)

    # podman re-serialises the manifest (so its digest is podman's, not the
    # layout's); the config and the layer contents must survive untouched
    summary = assert_served_image(
        skopeo,
        ref,
        tmp_path,
        manifest_digest=pushed,
        config_digest=image.config_digest,
        diff_ids=image.diff_ids,
    )
    assert summary["config"]["rootfs"]["diff_ids"] == image.diff_ids

    podman.rmi(image_id)  # all its names: the layout's and ref
    assert podman.images() == []
    podman.pull(ref)

    assert podman.image_id(ref) == image_id
    info = podman.inspect(ref)
    assert info["Digest"] == pushed
    assert f"{ref.rsplit(':', 1)[0]}@{pushed}" in info["RepoDigests"]


def test_podman_manifest_push_all_multiarch_index(registry, podman, skopeo, tmp_path):
    layout = OCILayout(tmp_path / "layout")
    amd64 = layout.add_image("amd64", architecture="amd64")
    arm64 = layout.add_image("arm64", architecture="arm64")
    ref = f"{registry.host}/e2e/podman-multi:1"
    podman.manifest_create(ref)
    podman.manifest_add(ref, layout.ref("amd64"))
    podman.manifest_add(ref, layout.ref("arm64"), "--arch", "arm64", "--variant", "v8")

    pushed = podman.manifest_push_all(ref, ref)

    index = assert_served_index(
        skopeo, ref, index_digest=pushed, children={"amd64": amd64.digest, "arm64": arm64.digest}
    )
    assert index["mediaType"] == OCI_INDEX
    for child in (amd64, arm64):
        assert_served_built_image(
            skopeo, f"{registry.host}/e2e/podman-multi@{child.digest}", tmp_path, child
        )

    content = assert_versions(registry, "e2e/podman-multi", ["push tag 1"])
    assert sorted(content["manifests"]) == sorted([pushed, amd64.digest, arm64.digest])

    # podman pulls the index back and picks its own architecture
    podman.pull(ref)
    assert "sha256:" + podman.image_id(ref) == amd64.config_digest
