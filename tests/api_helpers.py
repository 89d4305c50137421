"""Helpers for the HTTP-level tests of the registry API (tests/test_api_*.py).

They speak the distribution protocol through the `server` fixture (treq), the
way a client would: push blobs, push images, read OCI error bodies.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
API_VERSION = "registry/2.0"

#: The empty JSON object OCI artifacts use as config, and its digest.
EMPTY_JSON = b"{}"


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def random_bytes(size: int = 1024) -> bytes:
    return os.urandom(size)


def header(response, name: str) -> str | None:
    """The single value of header `name` of a treq response, or None."""
    values = response.headers.getRawHeaders(name)
    if not values:
        return None
    assert len(values) == 1, f"{name} sent {len(values)} times: {values}"
    return values[0]


def content_length(response) -> int | None:
    """The Content-Length the server sent (Twisted's client moves it out of the headers)."""
    value = header(response, "Content-Length")
    if value is not None:
        return int(value)
    length = response.length
    return None if not isinstance(length, int) else length


async def assert_oci_error(response, status: int, code: str | None = None) -> dict:
    """`response` is a `status` with an OCI error body whose first code is `code`.

    Returns the first error object.
    """
    body = await response.content()
    assert response.code == status, (response.code, body[:500])
    assert header(response, "Docker-Distribution-API-Version") == API_VERSION
    content_type = header(response, "Content-Type") or ""
    assert content_type.split(";")[0] == "application/json", content_type
    document = json.loads(body)
    assert isinstance(document, dict) and isinstance(document.get("errors"), list), document
    assert document["errors"], document
    for error in document["errors"]:
        assert isinstance(error.get("code"), str) and error["code"], error
        assert isinstance(error.get("message"), str) and error["message"], error
    if code is not None:
        assert document["errors"][0]["code"] == code, document
    return document["errors"][0]


async def push_blob(server, name: str, data: bytes | None = None) -> str:
    """Push `data` (random if None) to repository `name` monolithically; its digest."""
    if data is None:
        data = random_bytes()
    digest = digest_of(data)
    response = await server.request(
        "POST", f"/v2/{name}/blobs/uploads/?digest={digest}", data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    body = await response.content()
    assert response.code == 201, (response.code, body)
    assert header(response, "Docker-Content-Digest") == digest
    return digest


async def start_upload(server, name: str) -> str:
    """Open a chunked upload session in `name`; its Location (a path)."""
    response = await server.request("POST", f"/v2/{name}/blobs/uploads/")
    body = await response.content()
    assert response.code == 202, (response.code, body)
    return location_path(header(response, "Location"))


def location_path(location: str | None) -> str:
    """The path (and query) of a Location header, absolute or relative."""
    assert location, "no Location header"
    if location.startswith("http://") or location.startswith("https://"):
        location = "/" + location.split("/", 3)[3]
    return location


def with_query(path: str, query: str) -> str:
    return path + ("&" if "?" in path else "?") + query


def descriptor(media_type: str, data: bytes, **extra) -> dict:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def canonical(document: dict) -> bytes:
    return json.dumps(document, indent=3, sort_keys=False).encode()


class Image:
    """An image's manifest and blobs, built in memory."""

    def __init__(self, manifest: dict, blobs: dict[str, bytes], body: bytes | None = None):
        self.document = manifest
        self.blobs = blobs
        # A non-canonical layout on purpose: the registry must keep the bytes.
        self.body = body if body is not None else canonical(manifest)
        self.digest = digest_of(self.body)
        self.media_type = manifest.get("mediaType", OCI_MANIFEST)

    @property
    def size(self) -> int:
        return len(self.body)

    def descriptor(self, **extra) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def make_image(layers: int = 1, docker: bool = False, layer_size: int = 512, **extra) -> Image:
    """A random image with `layers` layers, OCI or Docker schema2."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
         "nonce": random_bytes(8).hex()}
    ).encode()
    layer_blobs = [random_bytes(layer_size) for _ in range(layers)]
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, b) for b in layer_blobs],
        **extra,
    }
    blobs = {digest_of(b): b for b in [config, *layer_blobs]}
    return Image(manifest, blobs)


def make_artifact(subject: Image | None = None, artifact_type: str = "application/vnd.test.sig",
                  payload: bytes | None = None, **extra) -> Image:
    """An OCI 1.1 artifact: artifactType, the empty config, one layer, maybe a subject."""
    payload = payload if payload is not None else random_bytes(64)
    manifest: dict = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(OCI_EMPTY, EMPTY_JSON),
        "layers": [descriptor("application/octet-stream", payload)],
        **extra,
    }
    if subject is not None:
        manifest["subject"] = subject.descriptor()
    return Image(manifest, {digest_of(EMPTY_JSON): EMPTY_JSON, digest_of(payload): payload})


def make_index(children: list[Image], docker: bool = False) -> Image:
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST if docker else OCI_INDEX,
        "manifests": [
            c.descriptor(platform={"architecture": arch, "os": "linux"})
            for c, arch in zip(children, ["amd64", "arm64", "s390x", "ppc64le"], strict=False)
        ],
    }
    return Image(manifest, {})


async def put_manifest(server, name: str, reference: str, body: bytes, media_type: str):
    """PUT a manifest; the response (its body read)."""
    response = await server.request(
        "PUT", f"/v2/{name}/manifests/{reference}", data=body,
        headers={"Content-Type": media_type},
    )
    await response.content()
    return response


async def push_image(server, name: str, image: Image, reference: str | None = "latest") -> str:
    """Push `image`'s blobs and its manifest (under `reference`, or its digest); its digest."""
    for data in image.blobs.values():
        await push_blob(server, name, data)
    response = await put_manifest(
        server, name, reference or image.digest, image.body, image.media_type
    )
    assert response.code == 201, response.code
    assert header(response, "Docker-Content-Digest") == image.digest
    return image.digest


async def version_numbers(server, name: str) -> list[int]:
    """The versions of repository `name`, or [] if it does not exist."""
    try:
        return [v.number for v in await server.registry.versions(name)]
    except Exception as e:  # NAME_UNKNOWN (or invalid): no versions
        if getattr(getattr(e, "code", None), "name", None) in ("NAME_UNKNOWN", "NAME_INVALID"):
            return []
        raise


async def latest(server, name: str) -> dict:
    return await server.registry.version_content(name)


@implementer(IBodyProducer)
class ChunkedBody:
    """A request body of unknown length: treq sends it with chunked transfer encoding."""

    length = UNKNOWN_LENGTH

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def startProducing(self, consumer) -> Deferred:
        for chunk in self._chunks:
            consumer.write(chunk)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def sleep(seconds: float) -> Deferred:
    d: Deferred = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


def raw_exchange(host: str, port: int, payload: bytes, timeout: float = 5.0,
                 close_after_send: bool = False) -> bytes:
    """Send `payload` on a fresh TCP connection; what the server sends back until it closes.

    Blocking: call it against a separate process (the `registry` fixture), or
    through `deferToThread` against the in-process `server`.
    """
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(payload)
        if close_after_send:
            return b""
        received = b""
        while True:
            try:
                data = s.recv(65536)
            except TimeoutError:
                raise AssertionError(
                    f"server kept the connection open for {timeout}s; got {received[:200]!r}"
                ) from None
            if not data:
                return received
            received += data
