"""Blob uploads: sessions, chunks, monolithic pushes, mounts, cancels and broken clients."""

from __future__ import annotations

import http.client
import socket
import time

import pytest
import pytest_twisted

from tests.api_helpers import (
    ChunkedBody,
    assert_oci_error,
    digest_of,
    header,
    location_path,
    push_blob,
    random_bytes,
    start_upload,
    version_numbers,
    with_query,
)
from tests.support import in_thread


async def patch(server, path: str, data: bytes, content_range: str | None = None, **headers):
    headers = {"Content-Type": "application/octet-stream", **headers}
    if content_range is not None:
        headers["Content-Range"] = content_range
    response = await server.request("PATCH", path, data=data, headers=headers)
    await response.content()
    return response


async def blob_visible(server, name: str, digest: str) -> bool:
    response = await server.request("HEAD", f"/v2/{name}/blobs/{digest}")
    await response.content()
    return response.code == 200


# Starting


@pytest_twisted.ensureDeferred
async def test_post_opens_an_upload_session_with_location_uuid_and_empty_range(server):
    response = await server.request("POST", "/v2/team/app/blobs/uploads/")
    assert await response.content() == b""
    assert response.code == 202
    location = header(response, "Location")
    uuid = header(response, "Docker-Upload-UUID")
    assert uuid
    assert location and uuid in location
    assert location_path(location).startswith("/v2/team/app/blobs/uploads/")
    assert header(response, "Range") == "0-0"


@pytest_twisted.ensureDeferred
async def test_two_upload_sessions_get_different_locations(server):
    first = await start_upload(server, "team/app")
    second = await start_upload(server, "team/app")
    assert first != second


@pytest_twisted.ensureDeferred
async def test_monolithic_post_with_digest_creates_the_blob_with_201(server):
    data = random_bytes(5000)
    digest = digest_of(data)
    response = await server.request(
        "POST", f"/v2/team/app/blobs/uploads/?digest={digest}", data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    await response.content()
    assert response.code == 201
    assert header(response, "Docker-Content-Digest") == digest
    assert location_path(header(response, "Location")) == f"/v2/team/app/blobs/{digest}"
    get = await server.request("GET", f"/v2/team/app/blobs/{digest}")
    assert await get.content() == data


@pytest_twisted.ensureDeferred
async def test_monolithic_post_with_a_sha512_digest_is_served_by_that_digest(server):
    data = random_bytes(100)
    digest = digest_of(data, "sha512")
    response = await server.request(
        "POST", f"/v2/team/app/blobs/uploads/?digest={digest}", data=data
    )
    await response.content()
    assert response.code == 201
    assert header(response, "Docker-Content-Digest") == digest
    get = await server.request("GET", f"/v2/team/app/blobs/{digest}")
    assert get.code == 200
    assert await get.content() == data


@pytest_twisted.ensureDeferred
async def test_monolithic_post_with_a_wrong_digest_is_400_and_leaves_no_blob(server):
    data = random_bytes(500)
    claimed = digest_of(b"something else")
    response = await server.request(
        "POST", f"/v2/team/app/blobs/uploads/?digest={claimed}", data=data
    )
    await assert_oci_error(response, 400, "DIGEST_INVALID")
    assert not await blob_visible(server, "team/app", claimed)
    assert not await blob_visible(server, "team/app", digest_of(data))
    assert await version_numbers(server, "team/app") in ([], [0])


@pytest_twisted.ensureDeferred
async def test_monolithic_post_with_a_malformed_digest_is_400_digest_invalid(server):
    response = await server.request(
        "POST", "/v2/team/app/blobs/uploads/?digest=sha256:nothex", data=b"abc"
    )
    await assert_oci_error(response, 400, "DIGEST_INVALID")


# Mounting


@pytest_twisted.ensureDeferred
async def test_mount_from_a_repository_holding_the_blob_is_201_and_makes_it_visible(server):
    data = random_bytes()
    digest = await push_blob(server, "team/source", data)
    response = await server.request(
        "POST", f"/v2/team/target/blobs/uploads/?mount={digest}&from=team/source"
    )
    await response.content()
    assert response.code == 201
    assert header(response, "Docker-Content-Digest") == digest
    assert location_path(header(response, "Location")) == f"/v2/team/target/blobs/{digest}"
    get = await server.request("GET", f"/v2/team/target/blobs/{digest}")
    assert await get.content() == data


@pytest.mark.parametrize("source", ["team/empty", "team/nonexistent", "Bad//Name", "team/../x"])
@pytest_twisted.ensureDeferred
async def test_mount_that_cannot_be_done_falls_back_to_an_upload_session(server, source):
    digest = await push_blob(server, "team/holder")
    await push_blob(server, "team/empty")
    response = await server.request(
        "POST", f"/v2/team/target/blobs/uploads/?mount={digest}&from={source}"
    )
    await response.content()
    assert response.code == 202
    assert header(response, "Docker-Upload-UUID")
    location = location_path(header(response, "Location"))
    assert location.startswith("/v2/team/target/blobs/uploads/")
    assert not await blob_visible(server, "team/target", digest)
    # the session works
    data = random_bytes(10)
    put = await server.request("PUT", with_query(location, f"digest={digest_of(data)}"),
                               data=data)
    await put.content()
    assert put.code == 201


@pytest_twisted.ensureDeferred
async def test_mount_with_a_garbage_digest_falls_back_to_an_upload_session(server):
    await push_blob(server, "team/source")
    response = await server.request(
        "POST", "/v2/team/target/blobs/uploads/?mount=garbage&from=team/source"
    )
    await response.content()
    assert response.code == 202
    assert header(response, "Location")


@pytest_twisted.ensureDeferred
async def test_mount_without_from_opens_an_upload_session(server):
    digest = await push_blob(server, "team/source")
    response = await server.request("POST", f"/v2/team/target/blobs/uploads/?mount={digest}")
    await response.content()
    assert response.code == 202
    assert not await blob_visible(server, "team/target", digest)


# Chunks


@pytest_twisted.ensureDeferred
async def test_chunked_upload_with_content_range_reports_growing_range(server):
    data = random_bytes(3000)
    location = await start_upload(server, "team/app")
    first = await patch(server, location, data[:1000], "0-999")
    assert first.code == 202
    assert header(first, "Range") == "0-999"
    location = location_path(header(first, "Location"))
    second = await patch(server, location, data[1000:2500], "1000-2499")
    assert second.code == 202
    assert header(second, "Range") == "0-2499"
    location = location_path(header(second, "Location"))
    put = await server.request(
        "PUT", with_query(location, f"digest={digest_of(data)}"), data=data[2500:],
        headers={"Content-Range": "2500-2999", "Content-Type": "application/octet-stream"},
    )
    await put.content()
    assert put.code == 201
    assert header(put, "Docker-Content-Digest") == digest_of(data)
    get = await server.request("GET", f"/v2/team/app/blobs/{digest_of(data)}")
    assert await get.content() == data


@pytest_twisted.ensureDeferred
async def test_content_range_with_bytes_prefix_is_accepted(server):
    location = await start_upload(server, "team/app")
    response = await patch(server, location, b"x" * 10, "bytes 0-9/10")
    assert response.code == 202
    assert header(response, "Range") == "0-9"


@pytest_twisted.ensureDeferred
async def test_patch_without_content_range_appends_the_chunk(server):
    data = random_bytes(2000)
    location = await start_upload(server, "team/app")
    first = await patch(server, location, data[:700])
    assert first.code == 202
    assert header(first, "Range") == "0-699"
    second = await patch(server, location_path(header(first, "Location")), data[700:])
    assert header(second, "Range") == "0-1999"
    put = await server.request(
        "PUT", with_query(location_path(header(second, "Location")), f"digest={digest_of(data)}")
    )
    await put.content()
    assert put.code == 201
    get = await server.request("GET", f"/v2/team/app/blobs/{digest_of(data)}")
    assert await get.content() == data


@pytest_twisted.ensureDeferred
async def test_patch_with_chunked_transfer_encoding_like_docker_is_stored(server):
    # docker streams a layer with no Content-Length and no Content-Range.
    parts = [random_bytes(100_000) for _ in range(5)]
    data = b"".join(parts)
    location = await start_upload(server, "team/app")
    response = await server.request(
        "PATCH", location, data=ChunkedBody(parts),
        headers={"Content-Type": "application/octet-stream"},
    )
    await response.content()
    assert response.code == 202
    assert header(response, "Range") == f"0-{len(data) - 1}"
    put = await server.request(
        "PUT", with_query(location_path(header(response, "Location")), f"digest={digest_of(data)}")
    )
    await put.content()
    assert put.code == 201
    get = await server.request("GET", f"/v2/team/app/blobs/{digest_of(data)}")
    assert await get.content() == data


@pytest_twisted.ensureDeferred
async def test_monolithic_post_with_chunked_transfer_encoding_is_stored(server):
    parts = [random_bytes(30_000) for _ in range(3)]
    data = b"".join(parts)
    response = await server.request(
        "POST", f"/v2/team/app/blobs/uploads/?digest={digest_of(data)}", data=ChunkedBody(parts)
    )
    await response.content()
    assert response.code == 201
    get = await server.request("GET", f"/v2/team/app/blobs/{digest_of(data)}")
    assert await get.content() == data


@pytest_twisted.ensureDeferred
async def test_put_with_the_whole_blob_as_last_chunk_completes_an_empty_session(server):
    data = random_bytes(1234)
    location = await start_upload(server, "team/app")
    put = await server.request(
        "PUT", with_query(location, f"digest={digest_of(data)}"), data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    await put.content()
    assert put.code == 201
    assert location_path(header(put, "Location")) == f"/v2/team/app/blobs/{digest_of(data)}"
    assert await blob_visible(server, "team/app", digest_of(data))


@pytest_twisted.ensureDeferred
async def test_upload_status_is_204_with_the_range_received(server):
    location = await start_upload(server, "team/app")
    status = await server.request("GET", location)
    await status.content()
    assert status.code == 204
    assert header(status, "Range") == "0-0"
    assert header(status, "Docker-Upload-UUID")
    await patch(server, location, b"a" * 42, "0-41")
    status = await server.request("GET", location)
    await status.content()
    assert status.code == 204
    assert header(status, "Range") == "0-41"
    assert location_path(header(status, "Location")).startswith("/v2/team/app/blobs/uploads/")


@pytest_twisted.ensureDeferred
async def test_range_end_is_exactly_size_minus_one(server):
    location = await start_upload(server, "team/app")
    response = await patch(server, location, b"z", "0-0")
    assert header(response, "Range") == "0-0"
    response = await patch(server, location, b"z", "1-1")
    assert header(response, "Range") == "0-1"
    status = await server.request("GET", location)
    assert header(status, "Range") == "0-1"


@pytest_twisted.ensureDeferred
async def test_out_of_order_chunk_is_416_with_the_range_held_and_upload_resumes(server):
    data = random_bytes(300)
    location = await start_upload(server, "team/app")
    await patch(server, location, data[:100], "0-99")
    skipped = await server.request(
        "PATCH", location, data=data[200:],
        headers={"Content-Range": "200-299", "Content-Type": "application/octet-stream"},
    )
    await assert_oci_error(skipped, 416, "BLOB_UPLOAD_INVALID")
    assert header(skipped, "Range") == "0-99"
    status = await server.request("GET", location)
    assert header(status, "Range") == "0-99"
    resumed = await patch(server, location, data[100:], "100-299")
    assert resumed.code == 202
    assert header(resumed, "Range") == "0-299"
    put = await server.request("PUT", with_query(location, f"digest={digest_of(data)}"))
    await put.content()
    assert put.code == 201


@pytest_twisted.ensureDeferred
async def test_chunk_that_rewrites_earlier_bytes_is_416(server):
    location = await start_upload(server, "team/app")
    await patch(server, location, b"a" * 100, "0-99")
    response = await server.request(
        "PATCH", location, data=b"b" * 50,
        headers={"Content-Range": "50-99", "Content-Type": "application/octet-stream"},
    )
    await assert_oci_error(response, 416)
    assert header(response, "Range") == "0-99"


@pytest_twisted.ensureDeferred
async def test_first_chunk_not_starting_at_zero_is_416(server):
    location = await start_upload(server, "team/app")
    response = await server.request(
        "PATCH", location, data=b"a" * 10,
        headers={"Content-Range": "5-14", "Content-Type": "application/octet-stream"},
    )
    await assert_oci_error(response, 416)
    status = await server.request("GET", location)
    assert header(status, "Range") == "0-0"


@pytest_twisted.ensureDeferred
async def test_content_range_disagreeing_with_content_length_is_400(server):
    location = await start_upload(server, "team/app")
    response = await server.request(
        "PATCH", location, data=b"a" * 10,
        headers={"Content-Range": "0-19", "Content-Type": "application/octet-stream"},
    )
    error = await assert_oci_error(response, 400)
    assert error["code"] in ("SIZE_INVALID", "BLOB_UPLOAD_INVALID")
    status = await server.request("GET", location)
    assert status.code == 204
    assert header(status, "Range") == "0-0"


@pytest.mark.parametrize("content_range", ["abc", "10-5", "-5", "bytes=0-"])
@pytest_twisted.ensureDeferred
async def test_malformed_content_range_is_a_4xx_error(server, content_range):
    location = await start_upload(server, "team/app")
    response = await server.request(
        "PATCH", location, data=b"a" * 6,
        headers={"Content-Range": content_range, "Content-Type": "application/octet-stream"},
    )
    body = await response.content()
    assert response.code in (400, 416), (response.code, body)
    await assert_oci_error(response, response.code)


@pytest_twisted.ensureDeferred
async def test_put_with_a_wrong_digest_is_400_and_the_upload_is_gone(server):
    data = random_bytes(100)
    location = await start_upload(server, "team/app")
    await patch(server, location, data, "0-99")
    wrong = digest_of(b"not this")
    put = await server.request("PUT", with_query(location, f"digest={wrong}"))
    await assert_oci_error(put, 400, "DIGEST_INVALID")
    assert not await blob_visible(server, "team/app", wrong)
    assert not await blob_visible(server, "team/app", digest_of(data))
    status = await server.request("GET", location)
    await assert_oci_error(status, 404, "BLOB_UPLOAD_UNKNOWN")


@pytest_twisted.ensureDeferred
async def test_put_without_a_digest_is_400_and_the_upload_survives(server):
    location = await start_upload(server, "team/app")
    await patch(server, location, b"abc", "0-2")
    put = await server.request("PUT", location)
    error = await assert_oci_error(put, 400)
    assert error["code"] in ("DIGEST_INVALID", "BLOB_UPLOAD_INVALID")
    status = await server.request("GET", location)
    assert status.code == 204
    assert header(status, "Range") == "0-2"


@pytest_twisted.ensureDeferred
async def test_upload_is_finished_only_once(server):
    data = random_bytes(10)
    location = await start_upload(server, "team/app")
    put = await server.request("PUT", with_query(location, f"digest={digest_of(data)}"), data=data)
    await put.content()
    assert put.code == 201
    again = await server.request(
        "PUT", with_query(location, f"digest={digest_of(data)}"), data=data
    )
    await assert_oci_error(again, 404, "BLOB_UPLOAD_UNKNOWN")


async def _resume_from_status_and_finish(server, location: str, data: bytes) -> None:
    """Resume an upload from what GET status says it holds; it completes to `data`."""
    status = await server.request("GET", location)
    await status.content()
    assert status.code == 204
    # "0-0" means empty here: these uploads never hold exactly one byte.
    end = int(header(status, "Range").split("-")[1])
    held = end + 1 if end else 0
    assert held <= len(data)
    put = await server.request(
        "PUT", with_query(location, f"digest={digest_of(data)}"), data=data[held:],
        headers={"Content-Range": f"{held}-{len(data) - 1}",
                 "Content-Type": "application/octet-stream"},
    )
    body = await put.content()
    assert put.code == 201, body
    get = await server.request("GET", f"/v2/team/app/blobs/{digest_of(data)}")
    assert await get.content() == data


@pytest_twisted.ensureDeferred
async def test_chunked_patch_longer_than_its_content_range_is_refused(server):
    data = random_bytes(400)
    location = await start_upload(server, "team/app")
    await patch(server, location, data[:50], "0-49")
    # Content-Range says 50 bytes, the chunked body carries 150.
    response = await server.request(
        "PATCH", location, data=ChunkedBody([b"\0" * 150]),
        headers={"Content-Range": "50-99", "Content-Type": "application/octet-stream"},
    )
    body = await response.content()
    assert response.code in (400, 416), (response.code, body)
    await assert_oci_error(response, response.code)
    await _resume_from_status_and_finish(server, location, data)


@pytest_twisted.ensureDeferred
async def test_chunked_patch_shorter_than_its_content_range_is_refused(server):
    data = random_bytes(400)
    location = await start_upload(server, "team/app")
    # Content-Range says 100 bytes, the chunked body carries 50.
    response = await server.request(
        "PATCH", location, data=ChunkedBody([data[:50]]),
        headers={"Content-Range": "0-99", "Content-Type": "application/octet-stream"},
    )
    body = await response.content()
    assert response.code in (400, 416), (response.code, body)
    await assert_oci_error(response, response.code)
    await _resume_from_status_and_finish(server, location, data)


# Cancelling and unknown sessions


@pytest_twisted.ensureDeferred
async def test_delete_cancels_the_upload_with_204_then_it_is_unknown(server):
    location = await start_upload(server, "team/app")
    await patch(server, location, b"abc", "0-2")
    response = await server.request("DELETE", location)
    await response.content()
    assert response.code == 204
    status = await server.request("GET", location)
    await assert_oci_error(status, 404, "BLOB_UPLOAD_UNKNOWN")
    more = await server.request("PATCH", location, data=b"d")
    await assert_oci_error(more, 404, "BLOB_UPLOAD_UNKNOWN")
    again = await server.request("DELETE", location)
    await assert_oci_error(again, 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
@pytest_twisted.ensureDeferred
async def test_unknown_upload_uuid_is_404_blob_upload_unknown(server, method):
    await start_upload(server, "team/app")
    path = "/v2/team/app/blobs/uploads/3f6c0d5e-0000-4000-8000-000000000000"
    if method == "PUT":
        path += "?digest=" + digest_of(b"x")
    response = await server.request(method, path, data=b"x" if method != "GET" else None)
    await assert_oci_error(response, 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
@pytest_twisted.ensureDeferred
async def test_upload_of_another_repository_is_404_there_and_untouched(server, method):
    location = await start_upload(server, "team/a")
    await patch(server, location, b"abc", "0-2")
    await start_upload(server, "team/b")
    uuid = location.rstrip("/").rsplit("/", 1)[1].split("?")[0]
    path = f"/v2/team/b/blobs/uploads/{uuid}"
    if method == "PUT":
        path += "?digest=" + digest_of(b"abc")
    response = await server.request(method, path, data=b"d" if method != "GET" else None)
    await assert_oci_error(response, 404, "BLOB_UPLOAD_UNKNOWN")
    status = await server.request("GET", location)
    assert status.code == 204
    assert header(status, "Range") == "0-2"
    assert not await blob_visible(server, "team/b", digest_of(b"abc"))


# A client that goes away mid-chunk


def _http(server, method: str, path: str, body: bytes | None = None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _wait_for_range(server, location: str, expected: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        status, headers, _ = _http(server, "GET", location)
        assert status == 204, status
        seen = headers.get("Range")
        if seen == expected:
            return seen
        time.sleep(0.05)
    return seen


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@in_thread
def test_upload_cut_off_mid_patch_keeps_what_arrived_and_resumes(server, chunked):
    data = random_bytes(200_000)
    status, headers, _ = _http(server, "POST", "/v2/team/app/blobs/uploads/")
    assert status == 202
    location = location_path(headers["Location"])
    half = 80_000
    request = (
        f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Content-Type: application/octet-stream\r\n"
    ).encode()
    if chunked:
        request += b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % half + data[:half] + b"\r\n"
    else:
        request += f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:half]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(request)
        time.sleep(0.3)
    assert _wait_for_range(server, location, f"0-{half - 1}") == f"0-{half - 1}"
    status, headers, body = _http(
        server, "PATCH", location, data[half:],
        {"Content-Range": f"{half}-{len(data) - 1}", "Content-Type": "application/octet-stream"},
    )
    assert status == 202, body
    assert headers["Range"] == f"0-{len(data) - 1}"
    status, headers, body = _http(
        server, "PUT", with_query(location, f"digest={digest_of(data)}")
    )
    assert status == 201, body
    assert headers["Docker-Content-Digest"] == digest_of(data)
    status, _, body = _http(server, "GET", f"/v2/team/app/blobs/{digest_of(data)}")
    assert status == 200
    assert body == data


@in_thread
def test_monolithic_post_cut_off_mid_body_leaves_no_blob(server):
    data = random_bytes(100_000)
    digest = digest_of(data)
    request = (
        f"POST /v2/team/app/blobs/uploads/?digest={digest} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data[:40_000]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(request)
        time.sleep(0.3)
    time.sleep(0.3)
    status, _, _ = _http(server, "HEAD", f"/v2/team/app/blobs/{digest}")
    assert status == 404
    status, _, body = _http(server, "GET", f"/v2/team/app/blobs/{digest}")
    assert status == 404, body
    # and the registry still works for the next client
    status, _, body = _http(server, "POST", f"/v2/team/app/blobs/uploads/?digest={digest}",
                            data, {"Content-Type": "application/octet-stream"})
    assert status == 201, body
