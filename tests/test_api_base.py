"""The base endpoint, unknown endpoints and methods, and the plain-HTTP port's TLS answer."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from tests.api_helpers import API_VERSION, assert_oci_error, header, raw_exchange


@pytest_twisted.ensureDeferred
async def test_base_endpoint_says_registry_v2_with_empty_json(server):
    response = await server.request("GET", "/v2/")
    assert response.code == 200
    assert header(response, "Docker-Distribution-API-Version") == API_VERSION
    assert (header(response, "Content-Type") or "").startswith("application/json")
    assert await response.json() == {}


@pytest_twisted.ensureDeferred
async def test_base_endpoint_answers_head(server):
    response = await server.request("HEAD", "/v2/")
    assert response.code == 200
    assert header(response, "Docker-Distribution-API-Version") == API_VERSION
    assert await response.content() == b""


@pytest_twisted.ensureDeferred
async def test_base_endpoint_without_trailing_slash_is_served(server):
    # Some clients ping "/v2" without the slash; a redirect or 200 both work for them,
    # an error does not.
    response = await server.request("GET", "/v2", allow_redirects=True)
    assert response.code == 200
    assert header(response, "Docker-Distribution-API-Version") == API_VERSION


@pytest.mark.parametrize("path", [
    "/v3/",
    "/v2/team/app/nonsense",
    "/v2/team/app/blobs/",
    "/favicon.ico",
])
@pytest_twisted.ensureDeferred
async def test_unknown_endpoint_is_404_with_oci_error_json(server, path):
    response = await server.request("GET", path)
    await assert_oci_error(response, 404)


@pytest.mark.parametrize("method,path", [
    ("POST", "/v2/"),
    ("DELETE", "/v2/"),
    ("PATCH", "/v2/team/app/manifests/latest"),
    ("POST", "/v2/team/app/manifests/latest"),
    ("PUT", "/v2/team/app/tags/list"),
    ("DELETE", "/v2/_catalog"),
    ("PUT", "/v2/team/app/blobs/sha256:" + "0" * 64),
])
@pytest_twisted.ensureDeferred
async def test_wrong_method_is_405_with_oci_error_json(server, method, path):
    response = await server.request(method, path)
    await assert_oci_error(response, 405)


@pytest_twisted.ensureDeferred
async def test_every_error_response_carries_the_api_version_header(server):
    for method, path in [
        ("GET", "/v2/team/app/tags/list"),
        ("GET", "/v2/team/app/manifests/latest"),
        ("GET", "/v2/Team/app/tags/list"),
        ("GET", "/v2/team/app/blobs/sha256:" + "1" * 64),
        ("GET", "/nope"),
    ]:
        response = await server.request(method, path)
        await response.content()
        assert response.code >= 400, (method, path)
        assert header(response, "Docker-Distribution-API-Version") == API_VERSION, (method, path)


TLS_CLIENT_HELLO = bytes.fromhex(
    "16030100a5010000a10303" + "00" * 32 + "00" + "0020" + "c02f" * 16 + "0100" + "0058"
) + b"\x00" * 88


def test_plain_http_port_answers_tls_client_hello_with_400_and_closes(registry):
    started = time.monotonic()
    answer = raw_exchange("127.0.0.1", registry.port, TLS_CLIENT_HELLO, timeout=5)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert elapsed < 3, f"the server took {elapsed:.1f}s to answer and close"


@pytest_twisted.ensureDeferred
async def test_in_process_server_answers_tls_client_hello_with_400_and_closes(server):
    answer = await deferToThread(
        raw_exchange, "127.0.0.1", server.port, TLS_CLIENT_HELLO, 5
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_plain_http_port_still_serves_http_after_a_tls_attempt(registry):
    raw_exchange("127.0.0.1", registry.port, TLS_CLIENT_HELLO, timeout=5)
    answer = raw_exchange(
        "127.0.0.1", registry.port,
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5,
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
