"""Bad input: every malformed name, tag, digest and manifest gets a clear 4xx with the
OCI error JSON, and leaves nothing behind (no repository, no version, no visible blob)."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest
import pytest_twisted

from tests.api_helpers import (
    OCI_MANIFEST,
    assert_oci_error,
    digest_of,
    latest,
    make_image,
    make_index,
    push_blob,
    push_image,
    random_bytes,
    start_upload,
    version_numbers,
    with_query,
)

BAD_NAMES = {
    "uppercase": "Team/app",
    "dot-dot": "team/../app",
    "dot": "team/./app",
    "double-slash": "team//app",
    "leading-slash": "/team/app",
    "trailing-dash": "team/app-",
    "too-long": "a" * 256,
    "too-long-in-components": "/".join(["abcdefghijklmno"] * 17),
    "encoded-double-slash": "team%2F%2Fapp",
    "encoded-dot-dot": "team%2F..%2Fapp",
    "space": "team/my%20app",
    "non-ascii": "t%C3%ABam/app",
    "encoded-leading-slash": "%2Fteam/app",
}


async def assert_registry_empty(server):
    response = await server.request("GET", "/v2/_catalog")
    assert response.code == 200
    assert (await response.json())["repositories"] in ([], None)


async def assert_bad_name(response, name: str):
    """400 NAME_INVALID; a name with a leading slash may also find no route (404)."""
    error = await assert_oci_error(response, response.code)
    allowed = {(400, "NAME_INVALID")}
    if unquote(name).startswith("/"):
        allowed |= {(404, code) for code in ("UNSUPPORTED", "BLOB_UNKNOWN", "BLOB_UPLOAD_UNKNOWN",
                                             "MANIFEST_UNKNOWN")}
    assert (response.code, error["code"]) in allowed, (response.code, error)


@pytest.mark.parametrize("name", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
@pytest_twisted.ensureDeferred
async def test_invalid_repository_name_refuses_an_upload_and_creates_nothing(server, name):
    response = await server.request("POST", f"/v2/{name}/blobs/uploads/")
    await assert_bad_name(response, name)
    await assert_registry_empty(server)


@pytest.mark.parametrize("name", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
@pytest_twisted.ensureDeferred
async def test_invalid_repository_name_refuses_a_monolithic_push(server, name):
    data = random_bytes(100)
    response = await server.request(
        "POST", f"/v2/{name}/blobs/uploads/?digest={digest_of(data)}", data=data
    )
    await assert_bad_name(response, name)
    await assert_registry_empty(server)


@pytest.mark.parametrize("name", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
@pytest_twisted.ensureDeferred
async def test_invalid_repository_name_refuses_a_manifest_push(server, name):
    image = make_image()
    response = await server.request(
        "PUT", f"/v2/{name}/manifests/v1", data=image.body,
        headers={"Content-Type": image.media_type},
    )
    await assert_bad_name(response, name)
    await assert_registry_empty(server)


@pytest.mark.parametrize("name", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
@pytest_twisted.ensureDeferred
async def test_invalid_repository_name_is_refused_on_reads(server, name):
    for path in (
        f"/v2/{name}/tags/list",
        f"/v2/{name}/manifests/latest",
        f"/v2/{name}/blobs/{digest_of(b'x')}",
        f"/v2/{name}/referrers/{digest_of(b'x')}",
    ):
        response = await server.request("GET", path)
        await assert_bad_name(response, name)


@pytest_twisted.ensureDeferred
async def test_repository_name_of_exactly_255_bytes_is_accepted(server):
    name = "/".join(["a" * 127, "b" * 127])
    assert len(name) == 255
    await push_image(server, name, make_image())
    response = await server.request("GET", f"/v2/{name}/tags/list")
    assert response.code == 200


@pytest_twisted.ensureDeferred
async def test_mount_into_an_invalid_name_is_refused(server):
    digest = await push_blob(server, "team/source")
    response = await server.request(
        "POST", f"/v2/Team/Target/blobs/uploads/?mount={digest}&from=team/source"
    )
    await assert_bad_name(response, "Team/Target")


# Tags

BAD_TAGS = {
    "leading-dot": ".hidden",
    "leading-dash": "-v1",
    "129-chars": "a" * 129,
    "plus": "v1+build",
    "percent-space": "v%201",
}


@pytest.mark.parametrize("tag", list(BAD_TAGS.values()), ids=list(BAD_TAGS))
@pytest_twisted.ensureDeferred
async def test_invalid_tag_is_a_400_to_push_and_unknown_to_read(server, tag):
    image = make_image()
    await push_image(server, "team/app", image, reference="ok")
    before = await version_numbers(server, "team/app")
    content = await latest(server, "team/app")
    response = await server.request(
        "PUT", f"/v2/team/app/manifests/{tag}", data=image.body,
        headers={"Content-Type": image.media_type},
    )
    await assert_oci_error(response, 400, "MANIFEST_INVALID")
    assert await version_numbers(server, "team/app") == before
    assert await latest(server, "team/app") == content
    for method in ("GET", "DELETE"):
        response = await server.request(method, f"/v2/team/app/manifests/{tag}")
        await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
    response = await server.request("HEAD", f"/v2/team/app/manifests/{tag}")
    assert response.code == 404
    assert await latest(server, "team/app") == content


@pytest.mark.parametrize("tag", ["a" * 128, "_under", "UPPER.case-1_2", "0"])
@pytest_twisted.ensureDeferred
async def test_valid_edge_case_tags_are_accepted(server, tag):
    image = make_image()
    await push_image(server, "team/app", image, reference=tag)
    response = await server.request("GET", f"/v2/team/app/manifests/{tag}")
    assert response.code == 200
    assert await response.content() == image.body


# Digests

BAD_DIGESTS = {
    "not-hex": "sha256:" + "z" * 64,
    "too-short": "sha256:" + "a" * 63,
    "uppercase-hex": "sha256:" + "A" * 64,
    "md5": "md5:" + "0" * 32,
    "empty-hex": "sha256:",
    "unknown-algorithm": "sha3:" + "0" * 64,
}


@pytest.mark.parametrize("digest", list(BAD_DIGESTS.values()), ids=list(BAD_DIGESTS))
@pytest_twisted.ensureDeferred
async def test_invalid_digest_in_a_manifest_reference_is_400_to_push_and_unknown_to_read(
    server, digest
):
    image = make_image()
    for data in image.blobs.values():
        await push_blob(server, "team/app", data)
    response = await server.request(
        "PUT", f"/v2/team/app/manifests/{digest}", data=image.body,
        headers={"Content-Type": image.media_type},
    )
    await assert_oci_error(response, 400, "DIGEST_INVALID")
    response = await server.request("GET", f"/v2/team/app/manifests/{digest}")
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
    response = await server.request("GET", f"/v2/team/app/manifests/{image.digest}")
    assert response.code == 404
    assert await version_numbers(server, "team/app") == [0]


@pytest.mark.parametrize("digest", list(BAD_DIGESTS.values()), ids=list(BAD_DIGESTS))
@pytest_twisted.ensureDeferred
async def test_invalid_digest_finishing_an_upload_is_400_and_no_blob_appears(server, digest):
    data = random_bytes(64)
    location = await start_upload(server, "team/app")
    response = await server.request("PUT", with_query(location, f"digest={digest}"), data=data)
    await assert_oci_error(response, 400, "DIGEST_INVALID")
    head = await server.request("HEAD", f"/v2/team/app/blobs/{digest_of(data)}")
    assert head.code == 404


@pytest.mark.parametrize("digest", list(BAD_DIGESTS.values()), ids=list(BAD_DIGESTS))
@pytest_twisted.ensureDeferred
async def test_invalid_digest_of_a_monolithic_push_is_400_and_no_blob_appears(server, digest):
    data = random_bytes(64)
    response = await server.request(
        "POST", f"/v2/team/app/blobs/uploads/?digest={digest}", data=data
    )
    await assert_oci_error(response, 400, "DIGEST_INVALID")
    head = await server.request("HEAD", f"/v2/team/app/blobs/{digest_of(data)}")
    assert head.code == 404


@pytest_twisted.ensureDeferred
async def test_manifest_delete_with_an_invalid_digest_is_404_and_changes_nothing(server):
    await push_image(server, "team/app", make_image())
    before = await version_numbers(server, "team/app")
    response = await server.request("DELETE", "/v2/team/app/manifests/md5:" + "0" * 32)
    await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
    assert await version_numbers(server, "team/app") == before


# Manifests


def _image_document() -> tuple[dict, dict]:
    image = make_image()
    return json.loads(image.body), image.blobs


def _without(key):
    def make():
        document, blobs = _image_document()
        del document[key]
        return json.dumps(document).encode(), blobs
    return make


def _with(**changes):
    def make():
        document, blobs = _image_document()
        document.update(changes)
        return json.dumps(document).encode(), blobs
    return make


def _layer_with(**changes):
    def make():
        document, blobs = _image_document()
        document["layers"][0].update(changes)
        return json.dumps(document).encode(), blobs
    return make


def _raw(body: bytes):
    def make():
        return body, {}
    return make


def _index_with_config():
    child = make_image()
    index = make_index([child])
    document = dict(index.document, config=child.document["config"])
    return json.dumps(document).encode(), {}


BAD_MANIFESTS = {
    "not-json": _raw(b"this is not json {"),
    "empty-body": _raw(b""),
    "json-array": _raw(b"[1, 2, 3]"),
    "json-string": _raw(b'"manifest"'),
    "invalid-utf8": _raw(b'{"schemaVersion": 2, "x": "\xff\xfe"}'),
    "no-config": _without("config"),
    "no-layers": _without("layers"),
    "no-schema-version": _without("schemaVersion"),
    "schema-version-3": _with(schemaVersion=3),
    "schema-version-string": _with(schemaVersion="2"),
    "config-not-object": _with(config="sha256:abc"),
    "layers-not-list": _with(layers={"a": 1}),
    "layer-bad-digest": _layer_with(digest="sha256:nothex"),
    "layer-no-media-type": _layer_with(mediaType=""),
    "layer-negative-size": _layer_with(size=-1),
    "layer-size-string": _layer_with(size="12"),
    "unknown-media-type": _with(mediaType="application/vnd.example.unknown+json"),
    "image-with-manifests": _with(manifests=[]),
    "annotations-not-strings": _with(annotations={"a": 1}),
    "index-with-config": _index_with_config,
}


@pytest.mark.parametrize("make", list(BAD_MANIFESTS.values()), ids=list(BAD_MANIFESTS))
@pytest_twisted.ensureDeferred
async def test_malformed_manifest_is_400_manifest_invalid_and_nothing_is_written(server, make):
    await push_image(server, "team/app", make_image(), reference="ok")
    before = await version_numbers(server, "team/app")
    content = await latest(server, "team/app")
    body, blobs = make()
    for data in blobs.values():
        await push_blob(server, "team/app", data)
    for reference in ("v1", digest_of(body)):
        response = await server.request(
            "PUT", f"/v2/team/app/manifests/{reference}", data=body,
            headers={"Content-Type": OCI_MANIFEST},
        )
        await assert_oci_error(response, 400, "MANIFEST_INVALID")
        response = await server.request("GET", f"/v2/team/app/manifests/{reference}")
        await assert_oci_error(response, 404, "MANIFEST_UNKNOWN")
    assert await version_numbers(server, "team/app") == before
    assert await latest(server, "team/app") == content


@pytest_twisted.ensureDeferred
async def test_manifest_with_a_generic_content_type_is_stored_under_its_media_type(server):
    image = make_image()
    for data in image.blobs.values():
        await push_blob(server, "team/app", data)
    response = await server.request(
        "PUT", "/v2/team/app/manifests/v1", data=image.body,
        headers={"Content-Type": "application/json"},
    )
    await response.content()
    assert response.code == 201
    response = await server.request("GET", "/v2/team/app/manifests/v1")
    assert response.headers.getRawHeaders("Content-Type") == [OCI_MANIFEST]
