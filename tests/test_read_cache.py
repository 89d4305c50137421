"""The read cache: bounded, and never serving what a committed write changed."""

from __future__ import annotations

import hashlib
import json

import pytest_twisted
from twisted.internet.task import Clock

from ocireg.cache import ReadCache

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def test_least_recently_used_answers_go_first_past_the_entry_bound():
    cache: ReadCache[str] = ReadCache(max_entries=2)
    cache.put("a", "A", 1, cache.generation)
    cache.put("b", "B", 1, cache.generation)
    assert cache.get("a") == "A"
    cache.put("c", "C", 1, cache.generation)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == ("A", "C")


def test_answers_past_the_byte_bound_push_older_ones_out():
    cache: ReadCache[str] = ReadCache(max_bytes=10)
    cache.put("a", "A", 6, cache.generation)
    cache.put("b", "B", 6, cache.generation)
    assert cache.get("a") is None and cache.get("b") == "B"
    cache.put("huge", "H", 11, cache.generation)
    assert cache.get("huge") is None and len(cache) == 1


def test_an_invalidation_forgets_everything():
    cache: ReadCache[str] = ReadCache()
    cache.put("a", "A", 1, cache.generation)
    cache.invalidate()
    assert cache.get("a") is None and len(cache) == 0


def test_an_answer_read_before_an_invalidation_is_not_kept():
    cache: ReadCache[str] = ReadCache()
    started = cache.generation
    cache.invalidate()  # a write committed while the read was under way
    cache.put("a", "stale", 1, started)
    assert cache.get("a") is None


# Stale answers: only what was kept before the change feed was lost, for a bounded time.


def suspended_cache(max_age: float = 300.0) -> tuple[ReadCache, Clock]:
    """A cache holding "a" -> 1, kept before it stopped hearing of changes."""
    clock = Clock()
    cache: ReadCache = ReadCache(clock=clock, stale_max_age=max_age)
    cache.put("a", 1, 10, cache.generation)
    cache.suspend()
    return cache, clock


def test_after_the_feed_is_lost_kept_answers_are_stale_only_and_nothing_new_is_kept():
    cache, _ = suspended_cache()
    assert cache.get("a") is None
    assert cache.stale("a") == 1
    cache.put("b", 2, 10, cache.generation)
    assert cache.stale("b") is None


def test_a_read_under_way_when_the_feed_is_lost_is_not_kept_even_once_it_is_back():
    cache: ReadCache = ReadCache(clock=Clock(), stale_max_age=300)
    started = cache.generation
    cache.suspend()
    cache.invalidate()
    cache.put("a", 1, 10, started)
    assert cache.get("a") is None


def test_stale_answers_end_after_stale_max_age():
    cache, clock = suspended_cache(max_age=60)
    clock.advance(59)
    assert cache.stale("a") == 1
    clock.advance(2)
    assert cache.stale("a") is None
    assert len(cache) == 0


def test_stale_max_age_0_serves_nothing_stale():
    cache, _ = suspended_cache(max_age=0)
    assert cache.stale("a") is None


def test_once_the_feed_is_back_what_was_kept_is_forgotten_and_caching_resumes():
    cache, _ = suspended_cache()
    cache.invalidate()
    assert cache.stale("a") is None and cache.get("a") is None
    cache.put("a", 3, 10, cache.generation)
    assert cache.get("a") == 3


def test_a_cache_that_never_lost_its_feed_serves_nothing_stale():
    cache: ReadCache = ReadCache(clock=Clock(), stale_max_age=300)
    cache.put("a", 1, 10, cache.generation)
    assert cache.stale("a") is None


# Through the API, on whichever backend the registry tests run on.


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _push(server, name: str, tag: str, layer: bytes) -> bytes:
    config = json.dumps({"os": "linux", "layer": _digest(layer)}).encode()
    for blob in (layer, config):
        response = await server.request(
            "POST", f"/v2/{name}/blobs/uploads/?digest={_digest(blob)}", data=blob
        )
        assert response.code == 201, await response.text()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _digest(layer), "size": len(layer)}],
    }).encode()
    response = await server.request(
        "PUT", f"/v2/{name}/manifests/{tag}", data=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert response.code == 201, await response.text()
    return manifest


async def _get(server, path: str, method: str = "GET"):
    response = await server.request(method, path, headers={"Accept": OCI_MANIFEST})
    return response.code, await response.content()


@pytest_twisted.ensureDeferred
async def test_a_moved_tag_is_served_moved_right_after_the_push(server):
    first = await _push(server, "cached/app", "latest", b"one")
    assert await _get(server, "/v2/cached/app/manifests/latest") == (200, first)
    assert await _get(server, "/v2/cached/app/manifests/latest") == (200, first)
    second = await _push(server, "cached/app", "latest", b"two")
    assert await _get(server, "/v2/cached/app/manifests/latest") == (200, second)


@pytest_twisted.ensureDeferred
async def test_a_deleted_tag_manifest_and_blob_stop_being_served_at_once(server):
    manifest = await _push(server, "cached/gone", "v1", b"layer")
    other = await _push(server, "cached/gone", "v2", b"other")
    blob = f"/v2/cached/gone/blobs/{_digest(b'other')}"
    assert (await _get(server, "/v2/cached/gone/manifests/v1"))[0] == 200
    assert (await _get(server, f"/v2/cached/gone/manifests/{_digest(manifest)}"))[0] == 200
    assert (await _get(server, blob, "HEAD"))[0] == 200
    response = await server.request("DELETE", "/v2/cached/gone/manifests/v1")
    assert response.code == 202
    assert (await _get(server, "/v2/cached/gone/manifests/v1"))[0] == 404
    response = await server.request("DELETE", f"/v2/cached/gone/manifests/{_digest(manifest)}")
    assert response.code == 202
    assert (await _get(server, f"/v2/cached/gone/manifests/{_digest(manifest)}"))[0] == 404
    # The layer only the deleted manifest needed goes with it.
    response = await server.request("DELETE", f"/v2/cached/gone/manifests/{_digest(other)}")
    assert response.code == 202
    assert (await _get(server, blob, "HEAD"))[0] == 404
