"""Manifests: every media type by tag and by digest, byte-exact serving, Accept, limits."""

from __future__ import annotations

import json

import pytest
import pytest_twisted

from tests.api_helpers import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    ChunkedBody,
    Image,
    assert_oci_error,
    content_length,
    digest_of,
    header,
    location_path,
    make_artifact,
    make_image,
    make_index,
    push_blob,
    push_image,
    put_manifest,
    version_numbers,
)


async def get(server, name, reference, accept=None, method="GET"):
    headers = {}
    if accept is not None:
        headers["Accept"] = accept
    response = await server.request(method, f"/v2/{name}/manifests/{reference}", headers=headers)
    body = await response.content()
    return response, body


async def assert_serves(server, name, reference, image, accept=None):
    """GET and HEAD of `reference` serve `image`'s exact bytes, type and digest."""
    response, body = await get(server, name, reference, accept)
    assert response.code == 200, body
    assert body == image.body
    assert digest_of(body) == header(response, "Docker-Content-Digest") == image.digest
    assert header(response, "Content-Type") == image.media_type
    assert content_length(response) == len(image.body)
    head, head_body = await get(server, name, reference, accept, method="HEAD")
    assert head.code == 200
    assert head_body == b""
    assert header(head, "Docker-Content-Digest") == image.digest
    assert header(head, "Content-Type") == image.media_type
    assert header(head, "Content-Length") == str(len(image.body))


def _kinds():
    return {
        "oci-image": lambda: make_image(layers=2),
        "docker-schema2": lambda: make_image(layers=2, docker=True),
        "oci-artifact": lambda: make_artifact(),
    }


@pytest.mark.parametrize("kind", list(_kinds()))
@pytest_twisted.ensureDeferred
async def test_image_manifest_pushed_by_tag_is_served_byte_exact_by_tag_and_digest(server, kind):
    image = _kinds()[kind]()
    for data in image.blobs.values():
        await push_blob(server, "team/app", data)
    response = await put_manifest(server, "team/app", "v1", image.body, image.media_type)
    assert response.code == 201
    assert header(response, "Docker-Content-Digest") == image.digest
    assert location_path(header(response, "Location")) == f"/v2/team/app/manifests/{image.digest}"
    await assert_serves(server, "team/app", "v1", image)
    await assert_serves(server, "team/app", image.digest, image)


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-manifest-list"])
@pytest_twisted.ensureDeferred
async def test_index_with_children_pushed_by_digest_is_served_by_tag_and_digest(server, docker):
    children = [make_image(docker=docker), make_image(docker=docker)]
    for child in children:
        await push_image(server, "team/app", child, reference=None)
    index = make_index(children, docker=docker)
    assert index.media_type == (DOCKER_LIST if docker else OCI_INDEX)
    response = await put_manifest(server, "team/app", "multi", index.body, index.media_type)
    assert response.code == 201
    await assert_serves(server, "team/app", "multi", index)
    await assert_serves(server, "team/app", index.digest, index)
    for child in children:
        await assert_serves(server, "team/app", child.digest, child)


@pytest_twisted.ensureDeferred
async def test_manifest_pushed_by_digest_is_pullable_by_digest_at_once(server):
    image = make_image()
    await push_image(server, "team/app", image, reference=None)
    await assert_serves(server, "team/app", image.digest, image)


@pytest_twisted.ensureDeferred
async def test_oci_artifact_with_empty_config_is_accepted_and_its_config_is_the_empty_json(
    server,
):
    artifact = make_artifact(artifact_type="application/vnd.example.sbom")
    assert artifact.document["config"]["mediaType"] == OCI_EMPTY
    await push_image(server, "team/app", artifact, reference="sbom")
    config = await server.request(
        "GET", f"/v2/team/app/blobs/{artifact.document['config']['digest']}"
    )
    assert await config.content() == EMPTY_JSON
    await assert_serves(server, "team/app", "sbom", artifact)


@pytest_twisted.ensureDeferred
async def test_manifest_without_media_type_field_is_served_with_the_pushed_content_type(server):
    image = make_image()
    del image.document["mediaType"]
    image = type(image)(image.document, image.blobs)
    assert image.media_type == OCI_MANIFEST and b"mediaType\": \"application/vnd.oci.image.m" \
        not in image.body
    await push_image(server, "team/app", image)
    await assert_serves(server, "team/app", "latest", image)


@pytest_twisted.ensureDeferred
async def test_unknown_tag_and_digest_are_404_manifest_unknown(server):
    await push_image(server, "team/app", make_image())
    response = await server.request("GET", "/v2/team/app/manifests/nope")
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
    response = await server.request("GET", f"/v2/team/app/manifests/{digest_of(b'x')}")
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
    response = await server.request("HEAD", "/v2/team/app/manifests/nope")
    assert response.code == 404
    response = await server.request("GET", "/v2/team/unknown/manifests/latest")
    error = await assert_oci_error(response, 404)
    assert error["code"] in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_manifest_of_one_repository_is_not_served_through_another(server):
    image = make_image()
    await push_image(server, "team/a", image)
    await push_image(server, "team/b", make_image())
    response = await server.request("GET", f"/v2/team/b/manifests/{image.digest}")
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")


# Accept negotiation


@pytest_twisted.ensureDeferred
async def test_accept_listing_the_stored_type_among_others_serves_it(server):
    image = make_image()
    await push_image(server, "team/app", image)
    accept = f"{DOCKER_MANIFEST}, {OCI_INDEX};q=0.9, {OCI_MANIFEST}"
    await assert_serves(server, "team/app", "latest", image, accept=accept)


@pytest_twisted.ensureDeferred
async def test_accept_sent_as_several_header_lines_is_merged(server):
    image = make_image()
    await push_image(server, "team/app", image)
    response = await server.request(
        "GET", "/v2/team/app/manifests/latest",
        headers={"Accept": [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST]},
    )
    body = await response.content()
    assert response.code == 200
    assert body == image.body


@pytest_twisted.ensureDeferred
async def test_accept_wildcard_serves_the_stored_type(server):
    image = make_image(docker=True)
    await push_image(server, "team/app", image)
    await assert_serves(server, "team/app", "latest", image, accept="*/*")


@pytest_twisted.ensureDeferred
async def test_accept_that_excludes_the_stored_type_is_404_manifest_unknown(server):
    image = make_image()  # OCI
    await push_image(server, "team/app", image)
    response = await server.request(
        "GET", "/v2/team/app/manifests/latest",
        headers={"Accept": [DOCKER_MANIFEST, DOCKER_LIST]},
    )
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
    response = await server.request(
        "GET", f"/v2/team/app/manifests/{image.digest}", headers={"Accept": DOCKER_MANIFEST}
    )
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")


# Size, schema1, content type, digest


@pytest_twisted.ensureDeferred
async def test_manifest_of_exactly_4_mib_is_accepted(server):
    image = make_image()
    for data in image.blobs.values():
        await push_blob(server, "team/app", data)
    document = dict(image.document, annotations={"pad": ""})
    body = json.dumps(document).encode()
    document["annotations"]["pad"] = "x" * (4 * 1024 * 1024 - len(body))
    body = json.dumps(document).encode()
    assert len(body) == 4 * 1024 * 1024
    response = await put_manifest(server, "team/app", "big", body, OCI_MANIFEST)
    assert response.code == 201
    served, served_body = await get(server, "team/app", "big")
    assert served_body == body


@pytest_twisted.ensureDeferred
async def test_manifest_over_4_mib_is_refused_with_413_and_nothing_changes(server):
    image = make_image()
    await push_image(server, "team/app", image)
    before = await version_numbers(server, "team/app")
    document = dict(image.document, annotations={"pad": "x" * (4 * 1024 * 1024)})
    body = json.dumps(document).encode()
    response = await server.request(
        "PUT", "/v2/team/app/manifests/huge", data=body, headers={"Content-Type": OCI_MANIFEST}
    )
    await assert_oci_error(response, 413)
    assert await version_numbers(server, "team/app") == before
    response = await server.request("GET", "/v2/team/app/manifests/huge")
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("content_type", [
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/json",
])
@pytest_twisted.ensureDeferred
async def test_schema1_manifest_is_refused_with_a_clear_manifest_invalid(server, content_type):
    body = json.dumps({
        "schemaVersion": 1, "name": "team/app", "tag": "old", "architecture": "amd64",
        "fsLayers": [{"blobSum": digest_of(b"layer")}],
        "history": [{"v1Compatibility": "{}"}],
    }).encode()
    response = await server.request(
        "PUT", "/v2/team/app/manifests/old", data=body, headers={"Content-Type": content_type}
    )
    error = await assert_oci_error(response, 400, "MANIFEST_INVALID")
    assert "schema1" in error["message"].lower() or "schema 1" in error["message"].lower()
    assert await version_numbers(server, "team/app") in ([], [0])


@pytest_twisted.ensureDeferred
async def test_content_type_disagreeing_with_media_type_is_manifest_invalid(server):
    image = make_image()  # OCI
    for data in image.blobs.values():
        await push_blob(server, "team/app", data)
    response = await server.request(
        "PUT", "/v2/team/app/manifests/v1", data=image.body,
        headers={"Content-Type": DOCKER_MANIFEST},
    )
    await assert_oci_error(response, 400, "MANIFEST_INVALID")
    assert await version_numbers(server, "team/app") in ([], [0])
    response = await server.request("GET", f"/v2/team/app/manifests/{image.digest}")
    assert response.code == 404


@pytest_twisted.ensureDeferred
async def test_put_by_digest_with_a_body_of_another_digest_is_400_digest_invalid(server):
    image = make_image()
    for data in image.blobs.values():
        await push_blob(server, "team/app", data)
    wrong = digest_of(image.body + b" ")
    response = await put_manifest(server, "team/app", wrong, image.body, image.media_type)
    assert response.code == 400
    response = await server.request(
        "PUT", f"/v2/team/app/manifests/{wrong}", data=image.body,
        headers={"Content-Type": image.media_type},
    )
    await assert_oci_error(response, 400, "DIGEST_INVALID")
    for reference in (wrong, image.digest):
        response = await server.request("GET", f"/v2/team/app/manifests/{reference}")
        await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_put_by_sha512_digest_is_served_by_that_digest(server):
    image = make_image()
    for data in image.blobs.values():
        await push_blob(server, "team/app", data)
    digest = digest_of(image.body, "sha512")
    response = await put_manifest(server, "team/app", digest, image.body, image.media_type)
    assert response.code == 201
    assert header(response, "Docker-Content-Digest") == digest
    served, body = await get(server, "team/app", digest)
    assert served.code == 200
    assert body == image.body


@pytest_twisted.ensureDeferred
async def test_manifest_sent_with_chunked_transfer_encoding_is_stored(server):
    image = make_image()
    for data in image.blobs.values():
        await push_blob(server, "team/app", data)
    response = await server.request(
        "PUT", "/v2/team/app/manifests/v1", data=ChunkedBody([image.body[:7], image.body[7:]]),
        headers={"Content-Type": image.media_type},
    )
    await response.content()
    assert response.code == 201
    await assert_serves(server, "team/app", "v1", image)


@pytest_twisted.ensureDeferred
async def test_chunked_manifest_over_4_mib_is_refused_with_413(server):
    response = await server.request(
        "PUT", "/v2/team/app/manifests/v1", data=ChunkedBody([b" " * (1 << 20)] * 5),
        headers={"Content-Type": OCI_MANIFEST},
    )
    await assert_oci_error(response, 413)
    assert await version_numbers(server, "team/app") in ([], [0])


# Subject


@pytest_twisted.ensureDeferred
async def test_put_of_a_manifest_with_subject_answers_oci_subject(server):
    image = make_image()
    await push_image(server, "team/app", image)
    artifact = make_artifact(subject=image)
    for data in artifact.blobs.values():
        await push_blob(server, "team/app", data)
    response = await put_manifest(
        server, "team/app", artifact.digest, artifact.body, artifact.media_type
    )
    assert response.code == 201
    assert header(response, "OCI-Subject") == image.digest


@pytest_twisted.ensureDeferred
async def test_put_of_a_manifest_without_subject_has_no_oci_subject(server):
    image = make_image()
    for data in image.blobs.values():
        await push_blob(server, "team/app", data)
    response = await put_manifest(server, "team/app", "v1", image.body, image.media_type)
    assert response.code == 201
    assert header(response, "OCI-Subject") is None


# Delete


@pytest_twisted.ensureDeferred
async def test_delete_of_a_tag_is_202_and_the_manifest_stays_by_digest(server):
    image = make_image()
    await push_image(server, "team/app", image, reference="v1")
    response = await server.request("DELETE", "/v2/team/app/manifests/v1")
    await response.content()
    assert response.code == 202
    response = await server.request("GET", "/v2/team/app/manifests/v1")
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
    await assert_serves(server, "team/app", image.digest, image)


@pytest_twisted.ensureDeferred
async def test_delete_by_digest_is_202_and_removes_the_manifest_and_its_tags(server):
    image = make_image()
    await push_image(server, "team/app", image, reference="v1")
    await push_image(server, "team/app", image, reference="v2")
    response = await server.request("DELETE", f"/v2/team/app/manifests/{image.digest}")
    await response.content()
    assert response.code == 202
    for reference in ("v1", "v2", image.digest):
        response = await server.request("GET", f"/v2/team/app/manifests/{reference}")
        await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
    tags = await server.request("GET", "/v2/team/app/tags/list")
    assert (await tags.json())["tags"] in ([], None)


@pytest_twisted.ensureDeferred
async def test_delete_of_an_unknown_manifest_is_404_manifest_unknown(server):
    await push_image(server, "team/app", make_image())
    before = await version_numbers(server, "team/app")
    response = await server.request("DELETE", "/v2/team/app/manifests/nope")
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
    response = await server.request("DELETE", f"/v2/team/app/manifests/{digest_of(b'x')}")
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
    assert await version_numbers(server, "team/app") == before


@pytest_twisted.ensureDeferred
async def test_delete_of_a_manifest_in_an_unknown_repository_is_404(server):
    response = await server.request("DELETE", "/v2/team/unknown/manifests/latest")
    error = await assert_oci_error(response, 404)
    assert error["code"] in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")


async def _push_index(server, name: str, reference: str | None):
    children = [make_image(), make_image()]
    for child in children:
        await push_image(server, name, child, reference=None)
    index = make_index(children)
    response = await put_manifest(server, name, reference or index.digest, index.body,
                                  index.media_type)
    assert response.code == 201
    return index, children


@pytest_twisted.ensureDeferred
async def test_delete_of_a_child_of_a_tagged_index_is_refused_naming_the_index(server):
    index, children = await _push_index(server, "team/app", "multi")
    before = await version_numbers(server, "team/app")
    response = await server.request("DELETE", f"/v2/team/app/manifests/{children[0].digest}")
    assert 400 <= response.code < 500
    error = await assert_oci_error(response, response.code)
    assert index.digest in error["message"]
    assert await version_numbers(server, "team/app") == before
    await assert_serves(server, "team/app", "multi", index)
    for child in children:
        await assert_serves(server, "team/app", child.digest, child)
        for digest, data in child.blobs.items():
            blob = await server.request("GET", f"/v2/team/app/blobs/{digest}")
            assert await blob.content() == data


@pytest_twisted.ensureDeferred
async def test_delete_of_a_child_of_an_index_pushed_by_digest_is_refused(server):
    index, children = await _push_index(server, "team/app", None)
    response = await server.request("DELETE", f"/v2/team/app/manifests/{children[1].digest}")
    assert 400 <= response.code < 500
    error = await assert_oci_error(response, response.code)
    assert index.digest in error["message"]
    # The index is whole still: tagging it now works.
    response = await put_manifest(server, "team/app", "multi", index.body, index.media_type)
    assert response.code == 201
    await assert_serves(server, "team/app", children[1].digest, children[1])


@pytest_twisted.ensureDeferred
async def test_child_can_be_deleted_once_its_index_is_gone(server):
    index, children = await _push_index(server, "team/app", "multi")
    response = await server.request("DELETE", f"/v2/team/app/manifests/{index.digest}")
    await response.content()
    assert response.code == 202
    response = await server.request("DELETE", f"/v2/team/app/manifests/{children[0].digest}")
    await response.content()
    assert response.code == 202
    response = await server.request("GET", f"/v2/team/app/manifests/{children[0].digest}")
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")


# Declared sizes


def _with_layer_size(image, size: int):
    document = json.loads(json.dumps(image.document))
    document["layers"][0]["size"] = size
    return Image(document, image.blobs)


@pytest_twisted.ensureDeferred
async def test_tag_write_of_a_manifest_declaring_a_wrong_layer_size_is_400_and_makes_no_version(
    server,
):
    await push_image(server, "team/app", make_image(), reference="v0")
    before = await version_numbers(server, "team/app")
    image = make_image(layer_size=140)
    lying = _with_layer_size(image, 999999)
    for data in lying.blobs.values():
        await push_blob(server, "team/app", data)
    response = await server.request(
        "PUT", "/v2/team/app/manifests/v1", data=lying.body,
        headers={"Content-Type": lying.media_type},
    )
    error = await assert_oci_error(response, 400, "SIZE_INVALID")
    layer = lying.document["layers"][0]["digest"]
    assert layer in error["message"]
    assert await version_numbers(server, "team/app") == before
    response = await server.request("GET", "/v2/team/app/manifests/v1")
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
    # The same blobs under a truthful manifest go in.
    response = await put_manifest(server, "team/app", "v1", image.body, image.media_type)
    assert response.code == 201


@pytest_twisted.ensureDeferred
async def test_index_declaring_a_wrong_child_size_is_400_and_makes_no_version(server):
    child = make_image()
    await push_image(server, "team/app", child, reference=None)
    before = await version_numbers(server, "team/app")
    index = make_index([child])
    document = json.loads(json.dumps(index.document))
    document["manifests"][0]["size"] += 1
    lying = Image(document, {})
    response = await server.request(
        "PUT", "/v2/team/app/manifests/multi", data=lying.body,
        headers={"Content-Type": lying.media_type},
    )
    error = await assert_oci_error(response, 400, "SIZE_INVALID")
    assert child.digest in error["message"]
    assert await version_numbers(server, "team/app") == before


@pytest_twisted.ensureDeferred
async def test_index_whose_child_pushed_by_digest_declares_a_wrong_layer_size_is_400(server):
    good = make_image()
    await push_image(server, "team/app", good, reference=None)
    lying = _with_layer_size(make_image(layer_size=140), 999999)
    await push_image(server, "team/app", lying, reference=None)
    before = await version_numbers(server, "team/app")
    index = make_index([good, lying])
    response = await server.request(
        "PUT", "/v2/team/app/manifests/multi", data=index.body,
        headers={"Content-Type": index.media_type},
    )
    error = await assert_oci_error(response, 400, "SIZE_INVALID")
    assert lying.document["layers"][0]["digest"] in error["message"]
    assert await version_numbers(server, "team/app") == before
    response = await server.request("GET", "/v2/team/app/manifests/multi")
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
