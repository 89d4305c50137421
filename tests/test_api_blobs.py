"""Blob reads and deletes: HEAD, GET, Range, visibility per repository, DELETE."""

from __future__ import annotations

import os

import pytest
import pytest_twisted

from ocireg.digest import Digest
from tests.api_helpers import (
    API_VERSION,
    assert_oci_error,
    content_length,
    digest_of,
    header,
    latest,
    make_image,
    push_blob,
    push_image,
    random_bytes,
    version_numbers,
)


@pytest_twisted.ensureDeferred
async def test_head_of_a_pushed_blob_gives_its_digest_and_size_without_a_body(server):
    data = random_bytes(3000)
    digest = await push_blob(server, "team/app", data)
    response = await server.request("HEAD", f"/v2/team/app/blobs/{digest}")
    assert response.code == 200
    assert header(response, "Docker-Content-Digest") == digest
    assert content_length(response) == 3000
    assert header(response, "Docker-Distribution-API-Version") == API_VERSION
    assert await response.content() == b""


@pytest_twisted.ensureDeferred
async def test_get_of_a_pushed_blob_serves_exactly_its_bytes(server):
    data = random_bytes(200_000)
    digest = await push_blob(server, "team/app", data)
    response = await server.request("GET", f"/v2/team/app/blobs/{digest}")
    body = await response.content()
    assert response.code == 200
    assert body == data
    assert header(response, "Docker-Content-Digest") == digest
    assert content_length(response) == len(data)


@pytest_twisted.ensureDeferred
async def test_get_of_an_empty_blob_serves_zero_bytes(server):
    digest = await push_blob(server, "team/app", b"")
    response = await server.request("GET", f"/v2/team/app/blobs/{digest}")
    assert response.code == 200
    assert await response.content() == b""
    assert content_length(response) == 0


@pytest_twisted.ensureDeferred
async def test_range_request_serves_206_with_the_slice_and_content_range(server):
    data = random_bytes(1000)
    digest = await push_blob(server, "team/app", data)
    response = await server.request(
        "GET", f"/v2/team/app/blobs/{digest}", headers={"Range": "bytes=100-199"}
    )
    body = await response.content()
    assert response.code == 206
    assert body == data[100:200]
    assert header(response, "Content-Range") == "bytes 100-199/1000"
    assert content_length(response) == 100
    assert header(response, "Docker-Content-Digest") == digest


@pytest_twisted.ensureDeferred
async def test_open_ended_range_serves_to_the_end(server):
    data = random_bytes(1000)
    digest = await push_blob(server, "team/app", data)
    response = await server.request(
        "GET", f"/v2/team/app/blobs/{digest}", headers={"Range": "bytes=990-"}
    )
    assert response.code == 206
    assert await response.content() == data[990:]
    assert header(response, "Content-Range") == "bytes 990-999/1000"


@pytest_twisted.ensureDeferred
async def test_suffix_range_serves_the_last_bytes(server):
    data = random_bytes(1000)
    digest = await push_blob(server, "team/app", data)
    response = await server.request(
        "GET", f"/v2/team/app/blobs/{digest}", headers={"Range": "bytes=-10"}
    )
    assert response.code == 206
    assert await response.content() == data[-10:]
    assert header(response, "Content-Range") == "bytes 990-999/1000"


@pytest_twisted.ensureDeferred
async def test_range_ending_past_the_end_is_clipped_to_the_blob(server):
    data = random_bytes(1000)
    digest = await push_blob(server, "team/app", data)
    response = await server.request(
        "GET", f"/v2/team/app/blobs/{digest}", headers={"Range": "bytes=500-5000"}
    )
    assert response.code == 206
    assert await response.content() == data[500:]
    assert header(response, "Content-Range") == "bytes 500-999/1000"


@pytest_twisted.ensureDeferred
async def test_range_starting_past_the_end_is_416_with_the_blob_size(server):
    data = random_bytes(1000)
    digest = await push_blob(server, "team/app", data)
    response = await server.request(
        "GET", f"/v2/team/app/blobs/{digest}", headers={"Range": "bytes=1000-1010"}
    )
    await response.content()
    assert response.code == 416
    assert header(response, "Content-Range") == "bytes */1000"


@pytest.mark.parametrize("value", [
    "bytes=0-1,5-6", "bytes=abc", "items=0-5", "bytes=9-3",
    # Past what any blob holds, and past what int() parses: a 500 once.
    "bytes=" + "9" * 5000 + "-", "bytes=-" + "9" * 5000, "bytes=0-" + "9" * 5000,
    # RFC 9110's digits are ASCII: these are Arabic-Indic 1 and 2.
    "bytes=\u0661-\u0662",
], ids=lambda v: v[:16])
@pytest_twisted.ensureDeferred
async def test_range_the_server_does_not_serve_as_one_slice_gets_the_whole_blob(server, value):
    data = random_bytes(100)
    digest = await push_blob(server, "team/app", data)
    response = await server.request(
        "GET", f"/v2/team/app/blobs/{digest}", headers={"Range": value.encode()}
    )
    assert response.code == 200
    assert await response.content() == data


@pytest_twisted.ensureDeferred
async def test_suffix_range_of_zero_bytes_is_416(server):
    data = random_bytes(100)
    digest = await push_blob(server, "team/app", data)
    response = await server.request(
        "GET", f"/v2/team/app/blobs/{digest}", headers={"Range": "bytes=-0"}
    )
    await response.content()
    assert response.code == 416
    assert header(response, "Content-Range") == "bytes */100"


@pytest_twisted.ensureDeferred
async def test_unknown_blob_is_404_blob_unknown(server):
    await push_blob(server, "team/app")
    unknown = digest_of(b"never pushed")
    response = await server.request("GET", f"/v2/team/app/blobs/{unknown}")
    await assert_oci_error(response, 404, "BLOB_UNKNOWN")
    response = await server.request("HEAD", f"/v2/team/app/blobs/{unknown}")
    assert response.code == 404
    assert await response.content() == b""


@pytest_twisted.ensureDeferred
async def test_blob_of_an_unknown_repository_is_404(server):
    digest = digest_of(b"never pushed")
    response = await server.request("GET", f"/v2/no/such/repo/blobs/{digest}")
    await assert_oci_error(response, 404, "BLOB_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_blob_pushed_to_one_repository_is_not_visible_through_another(server):
    data = random_bytes()
    digest = await push_blob(server, "team/a", data)
    await push_blob(server, "team/b")  # b exists, but does not hold the blob
    head = await server.request("HEAD", f"/v2/team/b/blobs/{digest}")
    assert head.code == 404
    get = await server.request("GET", f"/v2/team/b/blobs/{digest}")
    await assert_oci_error(get, 404, "BLOB_UNKNOWN")
    never = await server.request("GET", f"/v2/team/c/blobs/{digest}")
    await assert_oci_error(never, 404, "BLOB_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_blob_of_a_tagged_image_is_served_from_the_repository_version(server):
    image = make_image(layers=2)
    await push_image(server, "team/app", image)
    for digest, data in image.blobs.items():
        response = await server.request("GET", f"/v2/team/app/blobs/{digest}")
        assert response.code == 200
        assert await response.content() == data


@pytest_twisted.ensureDeferred
async def test_delete_of_a_staged_blob_is_202_and_then_it_is_gone(server):
    digest = await push_blob(server, "team/app")
    response = await server.request("DELETE", f"/v2/team/app/blobs/{digest}")
    await response.content()
    assert response.code == 202
    head = await server.request("HEAD", f"/v2/team/app/blobs/{digest}")
    assert head.code == 404
    again = await server.request("DELETE", f"/v2/team/app/blobs/{digest}")
    await assert_oci_error(again, 404, "BLOB_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_delete_of_a_blob_in_another_repository_is_404_and_keeps_it(server):
    digest = await push_blob(server, "team/a")
    await push_blob(server, "team/b")
    response = await server.request("DELETE", f"/v2/team/b/blobs/{digest}")
    await assert_oci_error(response, 404, "BLOB_UNKNOWN")
    head = await server.request("HEAD", f"/v2/team/a/blobs/{digest}")
    assert head.code == 200


@pytest_twisted.ensureDeferred
async def test_delete_of_a_blob_a_tagged_manifest_needs_is_refused_with_405(server):
    image = make_image(layers=1)
    await push_image(server, "team/app", image)
    before_versions = await version_numbers(server, "team/app")
    before = await latest(server, "team/app")
    layer = image.document["layers"][0]["digest"]
    response = await server.request("DELETE", f"/v2/team/app/blobs/{layer}")
    await assert_oci_error(response, 405, "UNSUPPORTED")
    assert header(response, "Allow") == "GET, HEAD"
    assert await version_numbers(server, "team/app") == before_versions
    assert await latest(server, "team/app") == before
    get = await server.request("GET", f"/v2/team/app/blobs/{layer}")
    assert get.code == 200
    assert await get.content() == image.blobs[layer]


@pytest.mark.parametrize("digest", [
    "sha256:xyz",
    "sha256:" + "A" * 64,
    "sha256:" + "0" * 63,
    "md5:" + "0" * 32,
    "nodigest",
])
@pytest_twisted.ensureDeferred
async def test_blob_get_with_an_invalid_digest_is_400_digest_invalid(server, digest):
    await push_blob(server, "team/app")
    response = await server.request("GET", f"/v2/team/app/blobs/{digest}")
    await assert_oci_error(response, 400, "DIGEST_INVALID")


@pytest_twisted.ensureDeferred
async def test_blob_delete_with_an_invalid_digest_is_400_and_changes_nothing(server):
    await push_image(server, "team/app", make_image())
    before = await version_numbers(server, "team/app")
    response = await server.request("DELETE", "/v2/team/app/blobs/md5:" + "0" * 32)
    await assert_oci_error(response, 400, "DIGEST_INVALID")
    assert await version_numbers(server, "team/app") == before


# Bytes gone from the blob store


async def _blob_records(server, digest: str) -> int:
    rows = await server.registry.metadata.transact(
        lambda txn: txn.execute("SELECT count(*) FROM blobs WHERE digest = ?", (digest,))
    )
    return rows[0][0]


@pytest_twisted.ensureDeferred
async def test_head_of_a_blob_whose_bytes_vanished_is_404_like_get_and_forgets_it(server):
    image = make_image()
    await push_image(server, "team/app", image, reference="v1")
    layer = image.document["layers"][0]["digest"]
    # Answered once, so that a remembered answer is there to go stale.
    response = await server.request("HEAD", f"/v2/team/app/blobs/{layer}")
    await response.content()
    assert response.code == 200
    os.remove(server.registry.blobs.blob_path(Digest.parse(layer)))

    response = await server.request("HEAD", f"/v2/team/app/blobs/{layer}")
    await response.content()
    assert response.code == 404
    assert await _blob_records(server, layer) == 0
    response = await server.request("HEAD", f"/v2/team/app/blobs/{layer}")
    await response.content()
    assert response.code == 404
    response = await server.request("GET", f"/v2/team/app/blobs/{layer}")
    await assert_oci_error(response, 404, "BLOB_UNKNOWN")

    # The client uploads it again, and the repository is whole once more.
    await push_blob(server, "team/app", image.blobs[layer])
    response = await server.request("HEAD", f"/v2/team/app/blobs/{layer}")
    await response.content()
    assert response.code == 200
    response = await server.request("GET", f"/v2/team/app/blobs/{layer}")
    assert await response.content() == image.blobs[layer]


@pytest_twisted.ensureDeferred
async def test_get_of_a_blob_whose_bytes_vanished_forgets_it(server):
    data = random_bytes(300)
    digest = await push_blob(server, "team/app", data)
    os.remove(server.registry.blobs.blob_path(Digest.parse(digest)))
    response = await server.request("GET", f"/v2/team/app/blobs/{digest}")
    await assert_oci_error(response, 404, "BLOB_UNKNOWN")
    assert await _blob_records(server, digest) == 0
