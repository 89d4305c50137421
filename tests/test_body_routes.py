"""Each request body goes into the sink its route declares, found by the app's own URL map.

The body path learns a request's route from the request line, which the
channel hands the request as soon as twisted.web has made it: the first test
here fails if twisted.web stops making the request there.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from ocireg.api.auth import RequestAccess
from ocireg.api.management import ManagementAPI
from ocireg.api.registry import RegistryAPI
from ocireg.api.root import build_site
from ocireg.api.sinks import DiscardedBody, GuardedBody, RefusedBody, UploadBody
from ocireg.api.streaming import (
    BodyRoutes,
    admin_body,
    chunk_body,
    discarded,
    last_chunk_body,
    manifest_body,
    monolithic_body,
    small_body,
)
from ocireg.auth.authoriser import OpenAuthoriser
from ocireg.auth.interfaces import Decision, Principal
from ocireg.config import DEFAULT_GRACE_PERIOD, DEFAULT_STAGING_TTL, DEFAULT_UPLOAD_TTL
from ocireg.housekeeping import Housekeeping
from tests.api_helpers import (
    digest_of,
    header,
    location_path,
    make_image,
    push_blob,
    push_image,
    random_bytes,
    start_upload,
)
from tests.domain_helpers import local_registry

ROUTES = BodyRoutes((RegistryAPI.bodies, ManagementAPI.bodies))


@pytest.mark.parametrize(("method", "target", "factory", "values"), [
    (b"PATCH", b"/v2/team/app/blobs/uploads/u-1", chunk_body, {"name": "team/app", "uuid": "u-1"}),
    (b"PUT", b"/v2/team/app/blobs/uploads/u-1?digest=x", last_chunk_body,
     {"name": "team/app", "uuid": "u-1"}),
    (b"POST", b"/v2/a/blobs/blobs/uploads/?digest=x", monolithic_body, {"name": "a/blobs"}),
    (b"PUT", b"/v2/team/app/manifests/latest", manifest_body,
     {"name": "team/app", "reference": "latest"}),
    # Percent-decoded as Klein decodes it before matching.
    (b"PUT", b"/v2/team/app/manifests/v%31", manifest_body,
     {"name": "team/app", "reference": "v1"}),
])
def test_a_route_that_declares_a_sink_gets_it_with_its_path_values(method, target, factory,
                                                                    values):
    found, found_values, _ = ROUTES.find(method, target)
    assert found is factory
    assert dict(found_values) == values


@pytest.mark.parametrize(("method", "target", "factory"), [
    # Registry routes that read no body, and /v2/ paths no route takes: discarded.
    (b"DELETE", b"/v2/team/app/manifests/latest", discarded),
    (b"GET", b"/v2/team/app/blobs/uploads/u-1", discarded),
    (b"PATCH", b"/v2/nothing/here", discarded),
    (b"POST", b"/v2/team/app/manifests/latest", discarded),
    # Every management request, on a route or not: an admin's.
    (b"POST", b"/api/v1/repositories/", admin_body),
    (b"GET", b"/api/v1/gc", admin_body),
    (b"POST", b"/api/nothing", admin_body),
    # Outside both APIs (the token endpoint): kept up to a small limit.
    (b"POST", b"/token", small_body),
    (b"PUT", b"/v2", small_body),
])
def test_a_route_without_a_declared_sink_takes_its_apis_sink_as_before(method, target, factory):
    found, values, _ = ROUTES.find(method, target)
    assert found is factory
    assert dict(values) == {}


def test_every_declared_sink_names_a_route_of_its_app():
    for api in (RegistryAPI, ManagementAPI):
        declared = set(api.bodies.declared())
        assert declared <= set(api.app.endpoints), declared - set(api.app.endpoints)
    assert set(RegistryAPI.bodies.declared()) == {
        "start_upload", "upload_chunk", "finish_upload", "put_manifest",
    }


def _site(registry, access: RequestAccess | None = None):
    housekeeping = Housekeeping.of(
        registry, reactor, DEFAULT_GRACE_PERIOD, DEFAULT_STAGING_TTL, DEFAULT_UPLOAD_TTL
    )
    return build_site(registry, housekeeping, access or RequestAccess(OpenAuthoriser()), reactor)


@contextlib.asynccontextmanager
async def _channel(tmp_path) -> AsyncIterator:
    async with local_registry(tmp_path) as registry:
        site = _site(registry)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        channel.makeConnection(StringTransport())
        try:
            yield channel
        finally:
            channel.connectionLost(Failure(ConnectionDone()))


@pytest_twisted.ensureDeferred
async def test_a_request_knows_its_request_line_and_sink_once_its_headers_are_in(tmp_path):
    async with _channel(tmp_path) as channel:
        channel.dataReceived(b"PUT /v2/team/app/manifests/latest HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 100\r\n\r\n")
        request = channel.requests[-1]
        # The body has not come: twisted.web has not said the request line yet.
        assert (request.method, request.uri) == (b"PUT", b"/v2/team/app/manifests/latest")
        assert isinstance(request.body, GuardedBody)
        assert request.content is request.body
        channel.dataReceived(b"x" * 100)
        # twisted.web's own parse of the line, now that the body is in, agrees.
        assert (request.method, request.uri) == (b"PUT", b"/v2/team/app/manifests/latest")


@pytest_twisted.ensureDeferred
async def test_a_pipelined_request_gets_its_own_request_line(tmp_path):
    async with _channel(tmp_path) as channel:
        channel.dataReceived(
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"
            b"PATCH /v2/a/blobs/uploads/u-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
        )
        # The first was answered (no token endpoint here: a 404) before the second began.
        assert channel.transport.value().startswith(b"HTTP/1.1 404")
        second = channel.requests[-1]
        assert (second.method, second.uri) == (b"PATCH", b"/v2/a/blobs/uploads/u-1")
        assert isinstance(second.body, UploadBody)


@pytest_twisted.ensureDeferred
async def test_a_patch_with_a_malformed_range_is_refused_by_its_sink(tmp_path):
    async with _channel(tmp_path) as channel:
        channel.dataReceived(b"PATCH /v2/a/blobs/uploads/u-1 HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Range: nonsense\r\nContent-Length: 5\r\n\r\n")
        assert isinstance(channel.requests[-1].body, RefusedBody)
        channel.dataReceived(b"PUT /v2/a/manifests/x HTTP/1.1\r\nHost: x\r\n\r\n")


class CountingAuthoriser(OpenAuthoriser):
    """Everyone may do everything, as with auth off; every decision is counted."""

    def __init__(self) -> None:
        self.decisions: list[tuple[str, str]] = []

    def decide(self, principal: Principal, repository: str, action: str) -> Decision:
        self.decisions.append((repository, action))
        return super().decide(principal, repository, action)


class _Server:
    def __init__(self, port) -> None:
        self.port = port.getHost().port

    def request(self, method: str, path: str, **kwargs):
        kwargs.setdefault("timeout", 30)
        return treq.request(method, f"http://127.0.0.1:{self.port}{path}", persistent=False,
                            **kwargs)


@contextlib.asynccontextmanager
async def _serving(tmp_path, authoriser: OpenAuthoriser) -> AsyncIterator[_Server]:
    """The site on a loopback port of the test's reactor, deciding with `authoriser`."""
    async with local_registry(tmp_path) as registry:
        site = _site(registry, RequestAccess(authoriser))
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        try:
            yield _Server(port)
        finally:
            await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_each_request_with_a_body_is_authorised_once(tmp_path):
    authoriser = CountingAuthoriser()
    async with _serving(tmp_path, authoriser) as server:

        async def decisions_of(method: str, path: str, status: int, **kwargs) -> list:
            before = len(authoriser.decisions)
            response = await server.request(method, path, **kwargs)
            body = await response.content()
            assert response.code == status, body
            return authoriser.decisions[before:]

        data = random_bytes(4096)
        digest = digest_of(data)
        assert await decisions_of("POST", f"/v2/one/blobs/uploads/?digest={digest}", 201,
                                  data=data) == [("one", "push")]

        location = await start_upload(server, "two")
        assert await decisions_of("PATCH", location, 202, data=data) == [("two", "push")]
        assert await decisions_of("PUT", f"{location}?digest={digest}", 201) == [
            ("two", "push")]

        image = make_image()
        for blob in image.blobs.values():
            await push_blob(server, "three", blob)
        assert await decisions_of(
            "PUT", "/v2/three/manifests/latest", 201, data=image.body,
            headers={"Content-Type": image.media_type},
        ) == [("three", "push")]


class NoPushes(CountingAuthoriser):
    """Everyone may do everything but push."""

    def decide(self, principal: Principal, repository: str, action: str) -> Decision:
        super().decide(principal, repository, action)
        return Decision.DENY if action == "push" else Decision.ALLOW


@pytest_twisted.ensureDeferred
async def test_a_refused_manifest_put_is_answered_with_its_sinks_refusal(tmp_path):
    authoriser = NoPushes()
    async with _serving(tmp_path, authoriser) as server:
        image = make_image()
        response = await server.request("PUT", "/v2/a/manifests/latest", data=image.body,
                                         headers={"Content-Type": image.media_type})
        document = json.loads(await response.content())
        assert response.code == 403, document
        assert document["errors"][0]["code"] == "DENIED"
        assert authoriser.decisions == [("a", "push")]


@pytest_twisted.ensureDeferred
async def test_a_refused_chunk_is_answered_with_its_sinks_refusal(tmp_path):
    authoriser = NoPushes()
    async with _serving(tmp_path, authoriser) as server:
        response = await server.request("PATCH", "/v2/a/blobs/uploads/some-upload",
                                         data=random_bytes(1000))
        document = json.loads(await response.content())
        assert response.code == 403, document
        assert document["errors"][0]["code"] == "DENIED"
        assert authoriser.decisions == [("a", "push")]


@pytest_twisted.ensureDeferred
async def test_an_upload_body_streams_into_the_upload_it_names(tmp_path):
    async with _serving(tmp_path, OpenAuthoriser()) as server:
        location = await start_upload(server, "team/app")
        data = random_bytes(3 * 1024 * 1024)
        response = await server.request("PATCH", location, data=data)
        await response.content()
        assert response.code == 202
        assert header(response, "Range") == f"0-{len(data) - 1}"
        response = await server.request("PUT", f"{location}?digest={digest_of(data)}")
        await response.content()
        assert response.code == 201
        assert location_path(header(response, "Location")).endswith(digest_of(data))
        await push_image(server, "team/app", make_image())


def test_a_discarded_body_keeps_nothing():
    body = DiscardedBody()
    body.write(b"x" * 1000)
    assert body.value() == b""
