"""Garbage collection in a tight loop while clients push, re-tag, delete and roll back.

Bounded in time. Each client owns a repository that keeps only its last two
versions (so content keeps leaving repositories) and shares a few layers
with the others. Collection runs back to back with a grace period of zero.
Afterwards every version of every repository must be whole: each manifest's
closure in the metadata store, each blob's bytes present and of the right
digest. No client may ever see a 5xx, and every tag write that got a 201 must
be pullable right after.
"""

from __future__ import annotations

import json
import random
import time

import attrs
import pytest_twisted
from twisted.internet.defer import DeferredList, ensureDeferred

from ocireg.digest import Digest
from ocireg.domain import history
from ocireg.domain.gc import GarbageCollector
from tests.api_helpers import (
    Image,
    digest_of,
    make_image,
    put_manifest,
    random_bytes,
)

CLIENTS = 4
SECONDS = 8.0
SHARED_LAYERS = [random_bytes(2048) for _ in range(3)]


@attrs.define
class Tally:
    tag_writes: int = 0
    retried_tag_writes: int = 0
    deletes: int = 0
    rollbacks: int = 0
    server_errors: list[str] = attrs.field(factory=list)
    unpullable: list[str] = attrs.field(factory=list)


async def _call(server, tally: Tally, method: str, path: str, **kwargs):
    response = await server.request(method, path, **kwargs)
    body = await response.content()
    if response.code >= 500:
        tally.server_errors.append(f"{method} {path}: {response.code} {body[:200]!r}")
    return response, body


async def _ensure_blobs(server, tally: Tally, name: str, image: Image) -> None:
    """What a client does: HEAD each blob, upload the ones the repository lacks."""
    for digest, data in image.blobs.items():
        head, _ = await _call(server, tally, "HEAD", f"/v2/{name}/blobs/{digest}")
        if head.code == 200:
            continue
        await _call(
            server, tally, "POST", f"/v2/{name}/blobs/uploads/?digest={digest}", data=data,
            headers={"Content-Type": "application/octet-stream"},
        )


async def _tag_write(server, tally: Tally, name: str, tag: str, image: Image) -> bool:
    """Push `image` under `tag`, re-uploading what went missing, as clients retry."""
    for attempt in range(4):
        await _ensure_blobs(server, tally, name, image)
        response = await put_manifest(server, name, tag, image.body, image.media_type)
        await response.content()
        if response.code >= 500:
            tally.server_errors.append(f"PUT {name}:{tag}: {response.code}")
        if response.code == 201:
            tally.tag_writes += 1
            tally.retried_tag_writes += attempt > 0
            await _pull(server, tally, name, image)
            return True
    return False


async def _pull(server, tally: Tally, name: str, image: Image) -> None:
    response, body = await _call(server, tally, "GET", f"/v2/{name}/manifests/{image.digest}")
    if response.code != 200 or digest_of(body) != image.digest:
        tally.unpullable.append(f"{name}@{image.digest}: manifest {response.code}")
        return
    for digest in image.blobs:
        response, body = await _call(server, tally, "GET", f"/v2/{name}/blobs/{digest}")
        if response.code != 200 or digest_of(body) != digest:
            tally.unpullable.append(f"{name}@{image.digest}: blob {digest} {response.code}")


def _image_with_shared_layer(rng: random.Random) -> Image:
    image = make_image(layers=1, layer_size=1024)
    shared = rng.choice(SHARED_LAYERS)
    image.document["layers"].append(
        {"mediaType": image.document["layers"][0]["mediaType"], "digest": digest_of(shared),
         "size": len(shared)}
    )
    image.blobs[digest_of(shared)] = shared
    return Image(image.document, image.blobs)


async def _client(server, tally: Tally, index: int, deadline: float) -> None:
    rng = random.Random(index)
    name = f"stress/client{index}"
    await _call(server, tally, "POST", "/api/v1/repositories/",
                json={"name": name, "retain_versions": 2})
    pushed: list[Image] = []
    while time.monotonic() < deadline:
        action = rng.random()
        if action < 0.5 or not pushed:
            image = _image_with_shared_layer(rng)
            if await _tag_write(server, tally, name, f"t{rng.randrange(3)}", image):
                pushed.append(image)
        elif action < 0.7:
            await _tag_write(server, tally, name, f"t{rng.randrange(3)}", rng.choice(pushed))
        elif action < 0.85:
            victim = pushed.pop(rng.randrange(len(pushed)))
            await _call(server, tally, "DELETE", f"/v2/{name}/manifests/{victim.digest}")
            tally.deletes += 1
        else:
            listing, body = await _call(server, tally, "GET",
                                        f"/api/v1/repositories/{name}/versions/")
            if listing.code == 200:
                numbers = [v["number"] for v in json.loads(body)["versions"]]
                await _call(server, tally, "POST", f"/api/v1/repositories/{name}/rollback",
                            json={"version": rng.choice(numbers)})
                tally.rollbacks += 1


async def _collect_until(collector: GarbageCollector, deadline: float) -> tuple[int, int]:
    """Collect back to back until `deadline`; how many runs, and items removed."""
    runs = removed = 0
    while time.monotonic() < deadline:
        report = await collector.collect()
        runs += 1
        removed += report.manifests + report.blobs
    return runs, removed


async def _broken_versions(registry) -> list[str]:
    """Every version of every repository, checked whole."""
    problems: list[str] = []

    async def content(txn):
        found = []
        for (name, repository_id) in await txn.execute("SELECT name, id FROM repositories"):
            for (number,) in await txn.execute(
                "SELECT number FROM repository_versions WHERE repository_id = ?",
                (repository_id,),
            ):
                held = await history.version_content(txn, name, number)
                refs = {}
                for digest in held["manifest"]:
                    rows = await txn.execute(
                        "SELECT kind, digest FROM manifest_references WHERE manifest = ?",
                        (digest,),
                    )
                    exists = await txn.execute(
                        "SELECT 1 FROM manifests WHERE digest = ?", (digest,)
                    )
                    refs[digest] = (bool(exists), rows)
                sizes = {}
                for digest in held["blob"]:
                    rows = await txn.execute("SELECT size FROM blobs WHERE digest = ?", (digest,))
                    sizes[digest] = rows[0][0] if rows else None
                found.append((name, number, held, refs, sizes))
        return found

    for name, number, held, refs, sizes in await registry.metadata.transact(content):
        where = f"{name} v{number}"
        for tag, digest in held["tag"].items():
            if digest not in held["manifest"]:
                problems.append(f"{where}: tag {tag} -> {digest} not in the version")
        for digest, (exists, references) in refs.items():
            if not exists:
                problems.append(f"{where}: manifest {digest} has no metadata")
            for kind, target in references:
                if target not in held[kind]:
                    problems.append(f"{where}: {digest} needs {kind} {target}, not in the version")
        for digest, size in sizes.items():
            if size is None:
                problems.append(f"{where}: blob {digest} has no metadata")
                continue
            problem = await registry.blobs.verify_blob(Digest.parse(digest), size)
            if problem is not None:
                problems.append(f"{where}: blob {digest} is {problem}")
    return problems


@pytest_twisted.ensureDeferred
async def test_collection_in_a_tight_loop_never_breaks_a_push_or_a_version(server, record_property):
    registry = server.registry
    collector = GarbageCollector(registry.metadata, registry.blobs, registry.clock, grace=0.0)
    tally = Tally()
    deadline = time.monotonic() + SECONDS

    results = await DeferredList(
        [ensureDeferred(_client(server, tally, i, deadline)) for i in range(CLIENTS)]
        + [ensureDeferred(_collect_until(collector, deadline))],
        consumeErrors=True,
    )
    for ok, value in results:
        assert ok, value
    collections, removed = results[-1][1]

    for key, value in attrs.asdict(tally).items():
        record_property(key, value if not isinstance(value, list) else len(value))
    record_property("collections", collections)
    record_property("items_removed", removed)

    assert tally.server_errors == []
    assert tally.unpullable == []
    assert tally.tag_writes > 20
    assert collections > 5
    # Content did leave repositories, and collection did take it meanwhile.
    assert removed > 0
    assert await _broken_versions(registry) == []
