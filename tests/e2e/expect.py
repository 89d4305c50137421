"""Assertions shared by the e2e tests: what the registry serves equals what
was pushed, digest for digest."""

from __future__ import annotations

import json
from pathlib import Path

from .clients import Skopeo, digest_of, http_get
from .oci_layout import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, BuiltImage, verify_image_blobs

_pulls = 0


def repository_of(ref: str) -> str:
    """ "host:port/name:tag" or "host:port/name@digest" -> "host:port/name"."""
    if "@" in ref:
        return ref.split("@", 1)[0]
    repo, tag = ref.rsplit(":", 1)
    assert "/" not in tag, f"{ref!r} has no tag"
    return repo


def assert_served_image(
    skopeo: Skopeo,
    ref: str,
    workdir: Path,
    *,
    manifest_digest: str,
    config_digest: str | None = None,
    layer_digests: list[str] | None = None,
    diff_ids: list[str] | None = None,
) -> dict:
    """`ref` ("host/repo:tag" or "host/repo@digest") is an image manifest:

    - `skopeo inspect --raw` serves bytes whose digest is `manifest_digest`,
      and so does the by-digest reference `host/repo@manifest_digest`;
    - `skopeo copy` pulls it (oci: for OCI manifests, dir: for Docker ones,
      both byte-preserving), with every blob's bytes matching its digest;
    - config and layer digests and the uncompressed layers' diff_ids are
      the expected ones (when given).

    Returns verify_image_blobs()'s summary plus "manifest".
    """
    global _pulls
    raw = skopeo.manifest_bytes(f"docker://{ref}")
    assert digest_of(raw) == manifest_digest, (ref, json.loads(raw))
    repo = repository_of(ref)
    by_digest = skopeo.manifest_bytes(f"docker://{repo}@{manifest_digest}")
    assert by_digest == raw
    manifest = json.loads(raw)

    _pulls += 1
    dest = Path(workdir) / f"pulled-{_pulls}"
    if manifest.get("mediaType") == DOCKER_MANIFEST:
        pulled = skopeo.pull_dir(f"docker://{ref}", dest)
        flat = True
    else:
        pulled = skopeo.pull_oci(f"docker://{ref}", dest)
        flat = False
    assert pulled.digest == manifest_digest
    assert pulled.raw == raw
    summary = verify_image_blobs(dest, manifest, flat=flat)
    summary["manifest"] = manifest

    if config_digest is not None:
        assert summary["config_digest"] == config_digest
    if layer_digests is not None:
        assert summary["layer_digests"] == list(layer_digests)
    # the layers decompress to what the config says they are
    assert summary["diff_ids"] == summary["config"]["rootfs"]["diff_ids"]
    if diff_ids is not None:
        assert summary["diff_ids"] == list(diff_ids)
    return summary


def assert_served_built_image(skopeo: Skopeo, ref: str, workdir: Path, image: BuiltImage) -> dict:
    """The registry serves exactly the image that oci_layout built."""
    return assert_served_image(
        skopeo,
        ref,
        workdir,
        manifest_digest=image.digest,
        config_digest=image.config_digest,
        layer_digests=image.layer_digests,
        diff_ids=image.diff_ids,
    )


def assert_served_index(
    skopeo: Skopeo, ref: str, *, index_digest: str, children: dict[str, str] | None = None
) -> dict:
    """`ref` is an index (or manifest list) with digest `index_digest`;
    `children` maps architecture -> child manifest digest.  Returns the index."""
    raw = skopeo.manifest_bytes(f"docker://{ref}")
    assert digest_of(raw) == index_digest, json.loads(raw)
    index = json.loads(raw)
    assert index.get("mediaType") in (
        "application/vnd.oci.image.index.v1+json",
        DOCKER_MANIFEST_LIST,
    )
    if children is not None:
        served = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
        assert served == children
    return index


def repository_versions(registry, name: str) -> list[dict]:
    """The versions of repository `name`, from the management API."""
    response = http_get(f"{registry.url}/api/v1/repositories/{name}/versions/")
    assert response.status == 200, response.body
    return json.loads(response.body)["versions"]


def version_content(registry, name: str, number: int) -> dict:
    response = http_get(f"{registry.url}/api/v1/repositories/{name}/versions/{number}/content")
    assert response.status == 200, response.body
    return json.loads(response.body)


def assert_versions(registry, name: str, reasons: list[str]) -> dict:
    """Repository `name` has exactly these versions after version 0; the latest's content."""
    versions = repository_versions(registry, name)
    assert [v["reason"] for v in versions] == ["created", *reasons]
    assert [v["number"] for v in versions] == list(range(len(versions)))
    return version_content(registry, name, versions[-1]["number"])
