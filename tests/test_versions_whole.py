"""Every version stays whole, whatever a repository goes through.

Hypothesis drives one repository per example through random sequences of
what clients and operators do — push images and indexes by tag and by
digest, push a manifest that lies about a size, delete tags, manifests and
blobs, move tags, roll back, delete (fold) versions, expire staging, collect
garbage with no grace period — and after every step checks that:

- every version still present holds exactly what it held when first seen;
- every version is whole: each tag's manifest, each manifest's child
  manifests and blobs are in it, each blob's bytes are stored with the size
  every descriptor declares;
- every tag of the latest version pulls byte-for-byte (manifests, children,
  blobs, and HEAD agrees with GET), also after a blob's bytes vanished from
  the store (HEAD and GET then say 404) and a push uploaded it again;
- a refused request (any 4xx) makes no version;
- no reason names a version that is gone without saying so.

The steps go through the registry's and the management API's operations (the
same calls the HTTP layer makes) on an in-process server, one per test with a
fresh repository per example, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor

from ocireg.api.errors import WIRE
from ocireg.digest import Digest
from ocireg.domain.expiry import Expiry
from ocireg.domain.gc import GarbageCollector
from ocireg.domain.management_operations import ManagementOperations
from ocireg.errors import RegistryError
from tests.api_helpers import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Image,
    descriptor,
)

TAGS = ("t0", "t1", "t2")
#: Steps per example at most.
STEPS = 14
_names = itertools.count()

OPERATIONS = (
    "push_image", "push_index", "push_lying", "delete_tag", "delete_manifest", "delete_blob",
    "move_tag", "rollback", "fold", "expire", "collect", "vanish",
)


def _image(layers: list[bytes], nonce: str, lie: bool = False) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": nonce}).encode()
    layer_descriptors = [descriptor(OCI_LAYER, data) for data in layers]
    if lie:
        layer_descriptors[0] = {**layer_descriptors[0], "size": 999999}
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layer_descriptors,
    }
    blobs = {str(Digest.of(b)): b for b in [config, *layers]}
    return Image(document, blobs)


def _index(children: list[Image]) -> Image:
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [c.descriptor(platform={"architecture": arch, "os": "linux"})
                      for c, arch in zip(children, ("amd64", "arm64"), strict=False)],
    }
    index = Image(document, {})
    index.children = children
    return index


def _references(body: bytes) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(digest, declared size) of a manifest's child manifests, and of its blobs."""
    document = json.loads(body)
    children = [(d["digest"], d["size"]) for d in document.get("manifests", [])]
    blobs = [(d["digest"], d["size"])
             for d in ([document["config"], *document["layers"]] if "config" in document else [])]
    return children, blobs


class World:
    """One repository of the server under test, and the truth about what was pushed to it."""

    def __init__(self, server, data) -> None:
        self.registry = server.registry
        self.management = ManagementOperations(self.registry.metadata, self.registry.blobs, reactor)
        self.expiry = Expiry(self.registry.metadata, self.registry.blobs, reactor, 0.0, 3600.0,
                             self.registry.is_writing)
        self.collector = GarbageCollector(self.registry.metadata, self.registry.blobs, reactor,
                                          0.0)
        self.data = data
        self.name = f"prop/r{next(_names)}"
        #: Bytes of every blob and manifest ever pushed, by digest.
        self.truth: dict[str, bytes] = {}
        self.images: list[Image] = []
        self.indexes: list[Image] = []
        #: What each version held when first seen: number -> kind -> name -> digest.
        self.seen: dict[int, dict[str, dict[str, str]]] = {}
        #: Bytes are made from this count, not at random: the same draws must
        #: make the same digests, since what is drawn next (which blob, which
        #: version) depends on their order, and hypothesis replays choices.
        self._made = itertools.count()

    def _bytes(self, size: int) -> bytes:
        return hashlib.shake_256(f"blob {next(self._made)}".encode()).digest(size)

    def _nonce(self) -> str:
        return f"image {next(self._made)}"

    def draw(self, strategy, label: str):
        return self.data.draw(strategy, label=label)

    # Pushing, as a client does

    async def _push_blobs(self, blobs: dict[str, bytes]) -> None:
        for digest, data in blobs.items():
            self.truth[digest] = data
            uuid = await self.registry.start_upload(self.name)
            upload = await self.registry.open_upload(self.name, uuid, 0, None)
            upload.append(data)
            await self.registry.complete_upload(self.name, uuid, digest, upload)

    async def _push(self, image: Image, reference: str | None) -> None:
        """Push `image` whole (children first, by digest), under `reference` or its digest."""
        for child in getattr(image, "children", ()):
            await self._push(child, None)
        await self._push_blobs(image.blobs)
        self.truth[image.digest] = image.body
        await self.registry.put_manifest(self.name, reference or image.digest, image.body,
                                         image.media_type)

    def _reference(self) -> str | None:
        return self.draw(st.sampled_from((None, *TAGS)), "reference")

    def _layers(self) -> list[bytes]:
        known = [data for image in self.images for d, data in image.blobs.items()
                 if d != image.document["config"]["digest"]]
        layers = []
        for _ in range(self.draw(st.integers(1, 2), "layers")):
            if known and self.draw(st.booleans(), "shared layer"):
                layers.append(self.draw(st.sampled_from(known), "which layer"))
            else:
                layers.append(self._bytes(self.draw(st.integers(0, 300), "layer size")))
        return layers

    async def push_image(self) -> None:
        image = _image(self._layers(), self._nonce())
        self.images.append(image)
        await self._push(image, self._reference())

    async def push_index(self) -> None:
        children = []
        for _ in range(self.draw(st.integers(1, 2), "children")):
            if self.images and self.draw(st.booleans(), "known child"):
                children.append(self.draw(st.sampled_from(self.images), "which child"))
            else:
                children.append(_image(self._layers(), self._nonce()))
                self.images.append(children[-1])
        index = _index(children)
        self.indexes.append(index)
        await self._push(index, self._reference())

    async def push_lying(self) -> None:
        """A manifest declaring a wrong layer size, or an index of one: refused."""
        image = _image(self._layers(), self._nonce(), lie=True)
        if self.draw(st.booleans(), "in an index"):
            image = _index([image])
        try:
            await self._push(image, self.draw(st.sampled_from(TAGS), "tag"))
        except RegistryError as e:
            assert e.code.name == "SIZE_INVALID", e
        else:
            raise AssertionError("a manifest declaring a wrong size was accepted")

    async def move_tag(self) -> None:
        known = self.images + self.indexes
        if known:
            await self._push(self.draw(st.sampled_from(known), "manifest"),
                             self.draw(st.sampled_from(TAGS), "tag"))

    async def vanish(self) -> None:
        """A blob's bytes vanish from the store: HEAD and GET say 404, and a push heals it."""
        blobs = sorted((await self.registry.version_content(self.name))["blob"])
        if not blobs:
            return
        digest = self.draw(st.sampled_from(blobs), "blob")
        os.remove(self.registry.blobs.blob_path(Digest.parse(digest)))
        for read in (self.registry.blob_size, self.registry.open_blob):
            try:
                await read(self.name, digest)
            except RegistryError as e:
                assert e.code.name == "BLOB_UNKNOWN", e
            else:
                raise AssertionError(f"{read.__name__} claims {digest}, whose bytes are gone")
        await self._push_blobs({digest: self.truth[digest]})

    # Deleting

    async def delete_tag(self) -> None:
        await self.registry.delete_manifest(self.name, self.draw(st.sampled_from(TAGS), "tag"))

    async def delete_manifest(self) -> None:
        known = self.images + self.indexes
        if known:
            image = self.draw(st.sampled_from(known), "manifest")
            await self.registry.delete_manifest(self.name, image.digest)

    async def delete_blob(self) -> None:
        known = sorted({d for image in self.images for d in image.blobs})
        if known:
            await self.registry.delete_blob(self.name, self.draw(st.sampled_from(known), "blob"))

    # History and housekeeping

    async def _numbers(self) -> list[int]:
        try:
            return [v.number for v in await self.registry.versions(self.name)]
        except RegistryError:
            return []

    async def rollback(self) -> None:
        numbers = await self._numbers()
        if numbers:
            await self.management.rollback(self.name, self.draw(st.sampled_from(numbers), "to"))

    async def fold(self) -> None:
        numbers = await self._numbers()
        if numbers:
            number = self.draw(st.sampled_from(numbers), "version")
            await self.management.delete_version(self.name, number)

    async def expire(self) -> None:
        await self.expiry.run()

    async def collect(self) -> None:
        await self.collector.collect()

    # The checks

    async def step(self) -> None:
        operation = self.draw(st.sampled_from(OPERATIONS), "operation")
        before = await self._numbers()
        try:
            await getattr(self, operation)()
        except RegistryError as e:
            assert 400 <= WIRE[e.code].status < 500, e
            assert await self._numbers() == before, f"refused {operation} made a version"
        await self.check()

    async def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        return await self.registry.metadata.transact(lambda txn: txn.execute(sql, params))

    async def check(self) -> None:
        numbers = await self._numbers()
        if not numbers:
            return
        contents = {n: await self.registry.version_content(self.name, n) for n in numbers}
        for number, content in contents.items():
            if number in self.seen:
                assert content == self.seen[number], f"version {number} changed"
            self.seen[number] = content
            await self._check_whole(number, content)
        await self._check_pulls(contents[numbers[-1]]["tag"])
        for version in await self.registry.versions(self.name):
            for mention in re.finditer(r"rollback to (\d+)(?![\d ]*\(deleted since\))",
                                       version.reason):
                assert int(mention[1]) in numbers, f"{version.reason!r}: no such version"

    async def _check_whole(self, number: int, content: dict[str, dict[str, str]]) -> None:
        where = f"version {number} of {self.name}"
        for tag, digest in content["tag"].items():
            assert digest in content["manifest"], f"{where}: tag {tag} points at {digest}, absent"
        for digest in content["manifest"]:
            rows = await self._rows("SELECT body FROM manifests WHERE digest = ?", (digest,))
            assert rows, f"{where}: manifest {digest} has no body"
            assert bytes(rows[0][0]) == self.truth[digest]
            children, blobs = _references(self.truth[digest])
            for child, size in children:
                assert child in content["manifest"], f"{where}: {digest} lacks {child}"
                assert len(self.truth[child]) == size, f"{where}: {digest} lies about {child}"
            for blob, size in blobs:
                assert blob in content["blob"], f"{where}: {digest} lacks blob {blob}"
                assert len(self.truth[blob]) == size, f"{where}: {digest} lies about {blob}"
        for digest in content["blob"]:
            rows = await self._rows("SELECT size FROM blobs WHERE digest = ?", (digest,))
            assert rows and rows[0][0] == len(self.truth[digest]), f"{where}: blob {digest} row"
            stored = await self.registry.blobs.blob_size(Digest.parse(digest))
            assert stored == len(self.truth[digest]), f"{where}: bytes of blob {digest}"

    async def _check_pulls(self, tags: dict[str, str]) -> None:
        for tag, digest in tags.items():
            pulled = await self.registry.get_manifest(self.name, tag)
            assert str(pulled.digest) == digest
            await self._pull(digest)

    async def _pull(self, digest: str) -> None:
        pulled = await self.registry.get_manifest(self.name, digest)
        assert pulled.body == self.truth[digest]
        children, blobs = _references(pulled.body)
        for child, _ in children:
            await self._pull(child)
        for blob, _ in blobs:
            _, size = await self.registry.blob_size(self.name, blob)
            _, served_size, f = await self.registry.open_blob(self.name, blob)
            with f:
                data = f.read()
            assert data == self.truth[blob] and size == served_size == len(data)


async def _run(server, data) -> None:
    world = World(server, data)
    for _ in range(data.draw(st.integers(1, STEPS), label="steps")):
        await world.step()


_SETTINGS = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("backend", ["sqlite"])
@settings(max_examples=150, **_SETTINGS)
@given(data=st.data())
@pytest_twisted.ensureDeferred
async def test_every_version_stays_whole_and_pullable_on_sqlite(server, data):
    await _run(server, data)


@pytest.mark.parametrize("backend", ["postgresql"])
@settings(max_examples=25, **_SETTINGS)
@given(data=st.data())
@pytest_twisted.ensureDeferred
async def test_every_version_stays_whole_and_pullable_on_postgresql(server, data):
    await _run(server, data)
