"""OCI 1.1 artifacts: a manifest with `artifactType`, the empty config and a
`subject`, pushed with skopeo, found through the referrers API."""

from __future__ import annotations

import pytest

from .clients import http_get
from .oci_layout import EMPTY_JSON_DIGEST, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, OCILayout

pytestmark = pytest.mark.e2e


def _push_image_and_artifact(registry, skopeo, tmp_path, repo):
    layout = OCILayout(tmp_path / "layout")
    image = layout.add_image("v1")
    artifact = layout.add_artifact(
        "sbom",
        image.manifest,
        artifact_type="application/vnd.example.sbom.v1",
        annotations={"org.example.kind": "sbom"},
    )
    signature = layout.add_artifact(
        "sig",
        image.manifest,
        artifact_type="application/vnd.example.signature.v1",
        payloads=[("application/vnd.example.signature.v1+json", b'{"sig":"x"}')],
    )
    assert skopeo.push(layout.ref("v1"), f"docker://{registry.host}/{repo}:1") == image.digest
    # referrers are pushed by digest, untagged (as oras and cosign do)
    for a, tag in ((artifact, "sbom"), (signature, "sig")):
        pushed = skopeo.push(layout.ref(tag), f"docker://{registry.host}/{repo}@{a.digest}")
        assert pushed == a.digest
    return image, artifact, signature


def test_skopeo_pushes_artifact_with_subject_and_empty_config(registry, skopeo, tmp_path):
    image, artifact, _ = _push_image_and_artifact(registry, skopeo, tmp_path, "e2e/app")

    ref = f"docker://{registry.host}/e2e/app@{artifact.digest}"
    assert skopeo.manifest_digest(ref) == artifact.digest
    served = skopeo.manifest(ref)
    assert served["artifactType"] == "application/vnd.example.sbom.v1"
    assert served["config"] == {"mediaType": OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2}
    assert served["subject"]["digest"] == image.digest
    blob = http_get(f"{registry.url}/v2/e2e/app/blobs/{EMPTY_JSON_DIGEST}")
    assert (blob.status, blob.body) == (200, b"{}")
    layer = artifact.layers[0]
    blob = http_get(f"{registry.url}/v2/e2e/app/blobs/{layer.digest}")
    assert blob.status == 200 and len(blob.body) == layer.size
    pulled = skopeo.pull_oci(ref, tmp_path / "pulled")
    assert pulled.digest == artifact.digest


@pytest.mark.reference_differs("distribution 2.8 has no referrers API (404)")
def test_referrers_api_lists_artifacts_with_subject(registry, skopeo, tmp_path):
    image, artifact, signature = _push_image_and_artifact(registry, skopeo, tmp_path, "e2e/app")

    r = http_get(f"{registry.url}/v2/e2e/app/referrers/{image.digest}")

    assert r.status == 200, r
    assert r.headers["content-type"].split(";")[0] == OCI_INDEX
    index = r.json
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert set(by_digest) == {artifact.digest, signature.digest}
    for a in (artifact, signature):
        d = by_digest[a.digest]
        assert d["mediaType"] == OCI_MANIFEST
        assert d["size"] == a.manifest.size
        assert d["artifactType"] == a.artifact_type
    assert by_digest[artifact.digest]["annotations"]["org.example.kind"] == "sbom"

    # nothing refers to the artifacts themselves: an empty index, not a 404
    r = http_get(f"{registry.url}/v2/e2e/app/referrers/{artifact.digest}")
    assert r.status == 200, r
    assert r.json["manifests"] == []
    # the filter, when the registry applies it, keeps one artifact type
    r = http_get(
        f"{registry.url}/v2/e2e/app/referrers/{image.digest}"
        "?artifactType=application/vnd.example.signature.v1"
    )
    assert r.status == 200, r
    if "artifactType" in r.headers.get("oci-filters-applied", ""):
        assert [m["digest"] for m in r.json["manifests"]] == [signature.digest]
