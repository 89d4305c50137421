"""skopeo 1.9 against the registry: push (copy to docker://), read back
(inspect --raw, copy to oci:/dir:), mount, retag, delete."""

from __future__ import annotations

import json
import re

import pytest

from .clients import ClientError, manifest_unknown
from .expect import (
    assert_served_built_image,
    assert_served_image,
    assert_served_index,
    assert_versions,
)
from .oci_layout import DOCKER_MANIFEST, MiB, OCILayout

pytestmark = pytest.mark.e2e


def test_skopeo_copies_oci_image_byte_for_byte(registry, skopeo, tmp_path):
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("v1", layer_sizes=[4096, 300_000])
    ref = f"{registry.host}/e2e/oci-image:1"

    pushed = skopeo.push(layout.ref("v1"), f"docker://{ref}")

    assert pushed == image.digest
    assert_served_built_image(skopeo, ref, tmp_path, image)
    # One push, one version, holding exactly the image and its tag.
    content = assert_versions(registry, "e2e/oci-image", ["push tag 1"])
    assert content["tags"] == {"1": image.digest}
    assert content["manifests"] == [image.digest]
    assert sorted(content["blobs"]) == sorted([image.config_digest, *image.layer_digests])


def test_skopeo_copies_docker_schema2_image_byte_for_byte(registry, skopeo, tmp_path):
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image(None, docker=True)
    src = layout.export_dir(image, tmp_path / "docker-image")
    ref = f"{registry.host}/e2e/docker-image:1"

    pushed = skopeo.push(src, f"docker://{ref}")

    assert pushed == image.digest
    summary = assert_served_built_image(skopeo, ref, tmp_path, image)
    assert summary["manifest"]["mediaType"] == DOCKER_MANIFEST


def test_skopeo_converts_oci_image_to_docker_schema2(registry, skopeo, tmp_path):
    """`--format v2s2`: skopeo rewrites manifest and config; the registry
    must serve exactly what skopeo pushed, with the same layer contents."""
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("v1")
    ref = f"{registry.host}/e2e/converted:1"

    pushed = skopeo.push(layout.ref("v1"), f"docker://{ref}", extra=["--format", "v2s2"])

    assert pushed != image.digest
    summary = assert_served_image(
        skopeo,
        ref,
        tmp_path,
        manifest_digest=pushed,
        layer_digests=image.layer_digests,
        diff_ids=image.diff_ids,
    )
    assert summary["manifest"]["mediaType"] == DOCKER_MANIFEST


def test_skopeo_copies_multiarch_index_with_all(registry, skopeo, tmp_path):
    layout = OCILayout(tmp_path / "layout")
    index = layout.add_index("multi", architectures=("amd64", "arm64"))
    ref = f"{registry.host}/e2e/multi:1"

    pushed = skopeo.push(layout.ref("multi"), f"docker://{ref}", all=True)

    assert pushed == index.digest
    assert_served_index(
        skopeo,
        ref,
        index_digest=index.digest,
        children={c.architecture: c.digest for c in index.children},
    )
    for child in index.children:
        assert_served_built_image(
            skopeo, f"{registry.host}/e2e/multi@{child.digest}", tmp_path, child
        )
    # and the whole index comes back with --all, byte for byte
    pulled = skopeo.pull_oci(f"docker://{ref}", tmp_path / "pulled-all", all=True)
    assert pulled.digest == index.digest
    # The children went up by digest into staging; the index's tag write
    # promoted them all in one version.
    content = assert_versions(registry, "e2e/multi", ["push tag 1"])
    assert sorted(content["manifests"]) == sorted(
        [index.digest, *(c.digest for c in index.children)]
    )


def test_skopeo_copies_image_with_64mib_layer(registry, skopeo, tmp_path):
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("big", layer_sizes=[64 * MiB, 1024])
    assert image.layers[0].descriptor.size > 64 * MiB
    ref = f"{registry.host}/e2e/big:1"

    pushed = skopeo.push(layout.ref("big"), f"docker://{ref}")

    assert pushed == image.digest
    assert_served_built_image(skopeo, ref, tmp_path, image)


def test_skopeo_mounts_layers_into_second_repository(registry, skopeo, tmp_path):
    """The second push mounts (`POST …/uploads/?mount=<digest>&from=first`)
    every layer it saw in the first repository, and the second repository
    then serves the whole image on its own."""
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("v1", layer_sizes=[4096, 200_000, 8192])
    first = f"{registry.host}/e2e/first:1"
    second = f"{registry.host}/e2e/second:1"
    skopeo.push(layout.ref("v1"), f"docker://{first}")

    r = skopeo.copy(f"docker://{first}", f"docker://{second}", debug=True)

    mounts = re.findall(
        r"Trying to mount \S*/v2/e2e/second/blobs/uploads/\?from=e2e%2Ffirst"
        r"&mount=(sha256%3A[0-9a-f]{64})",
        r.err,
    )
    assert sorted(m.replace("%3A", ":") for m in mounts) == sorted(image.layer_digests), r.err
    assert r.err.count("... mount OK") == len(image.layers), r.err
    assert_served_built_image(skopeo, second, tmp_path, image)
    assert_served_built_image(skopeo, first, tmp_path, image)
    assert_versions(registry, "e2e/first", ["push tag 1"])
    content = assert_versions(registry, "e2e/second", ["push tag 1"])
    assert sorted(content["blobs"]) == sorted([image.config_digest, *image.layer_digests])


def test_skopeo_retag_points_second_tag_at_same_manifest(registry, skopeo, tmp_path):
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("v1")
    skopeo.push(layout.ref("v1"), f"docker://{registry.host}/e2e/a:1")

    pushed = skopeo.push(f"docker://{registry.host}/e2e/a:1", f"docker://{registry.host}/e2e/a:2")

    assert pushed == image.digest
    assert_served_built_image(skopeo, f"{registry.host}/e2e/a:2", tmp_path, image)
    assert_served_built_image(skopeo, f"{registry.host}/e2e/a:1", tmp_path, image)
    tags = skopeo("list-tags", "--tls-verify=false", f"docker://{registry.host}/e2e/a").out
    assert sorted(json.loads(tags)["Tags"]) == ["1", "2"]
    content = assert_versions(registry, "e2e/a", ["push tag 1", "push tag 2"])
    assert content["tags"] == {"1": image.digest, "2": image.digest}

    # The same push again changes nothing, so it makes no version.
    skopeo.push(layout.ref("v1"), f"docker://{registry.host}/e2e/a:1")
    assert_versions(registry, "e2e/a", ["push tag 1", "push tag 2"])


def test_skopeo_delete_makes_tag_manifest_unknown(registry, skopeo, tmp_path):
    """`skopeo delete` resolves the tag and sends DELETE …/manifests/<digest>;
    afterwards neither the tag nor the digest resolves."""
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("v1")
    ref = f"{registry.host}/e2e/doomed:1"
    skopeo.push(layout.ref("v1"), f"docker://{ref}")
    assert skopeo.manifest_digest(f"docker://{ref}") == image.digest

    skopeo.delete(f"docker://{ref}")

    for gone in (ref, f"{registry.host}/e2e/doomed@{image.digest}"):
        with pytest.raises(ClientError) as excinfo:
            skopeo.inspect_raw(f"docker://{gone}")
        assert manifest_unknown(excinfo.value), excinfo.value
    content = assert_versions(
        registry, "e2e/doomed", ["push tag 1", f"delete manifest {image.digest}"]
    )
    assert content == {
        "repository": "e2e/doomed", "version": 2, "tags": {}, "manifests": [], "blobs": []
    }


def test_skopeo_delete_of_a_child_of_a_tagged_index_is_refused_and_the_index_still_copies(
    registry, skopeo, tmp_path
):
    """A child of an index cannot be deleted by digest while the index needs it:
    `skopeo copy --all` of the tag keeps working, and no version is made."""
    layout = OCILayout(tmp_path / "layout")
    index = layout.add_index("multi", architectures=("amd64", "arm64"))
    ref = f"{registry.host}/e2e/keep:1"
    assert skopeo.push(layout.ref("multi"), f"docker://{ref}", all=True) == index.digest
    child = index.children[0]

    with pytest.raises(ClientError) as excinfo:
        skopeo.delete(f"docker://{registry.host}/e2e/keep@{child.digest}")
    assert index.digest in excinfo.value.stderr, excinfo.value

    pulled = skopeo.pull_oci(f"docker://{ref}", tmp_path / "pulled-all", all=True)
    assert pulled.digest == index.digest
    for each in index.children:
        assert_served_built_image(
            skopeo, f"{registry.host}/e2e/keep@{each.digest}", tmp_path, each
        )
    assert_versions(registry, "e2e/keep", ["push tag 1"])
