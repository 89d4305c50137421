"""Staging expiry and upload purging, driven by a fake clock."""

from __future__ import annotations

import json
import time

import pytest_twisted
from twisted.internet.task import Clock

from ocireg.digest import Digest
from ocireg.domain.expiry import EXPIRED_STAGING_REASON, Expiry
from ocireg.domain.registry_operations import RegistryOperations
from ocireg.errors import RegistryError
from ocireg.manifest import OCI_INDEX, OCI_MANIFEST
from tests.domain_helpers import image_manifest, local_registry, push_blob

STAGING_TTL = 24 * 3600.0
UPLOAD_TTL = 24 * 3600.0


@pytest_twisted.async_yield_fixture
async def world(tmp_path):
    clock = Clock()
    clock.advance(time.time())
    async with local_registry(tmp_path, clock) as registry:
        expiry = Expiry(
            registry.metadata, registry.blobs, clock, STAGING_TTL, UPLOAD_TTL, registry.is_writing
        )
        yield registry, expiry, clock


async def _reasons(registry: RegistryOperations, name: str) -> list[str]:
    return [v.reason for v in await registry.versions(name)]


@pytest_twisted.ensureDeferred
async def test_complete_untagged_manifest_is_promoted_when_staging_expires(world):
    registry, expiry, clock = world
    config, layer = await push_blob(registry, "team/app"), await push_blob(registry, "team/app")
    body = image_manifest(config, [layer])
    digest = Digest.of(body)
    await registry.put_manifest("team/app", str(digest), body, OCI_MANIFEST)

    assert (await expiry.run()).promoted == 0
    clock.advance(STAGING_TTL + 1)
    report = await expiry.run()

    assert report.promoted == 1
    assert await _reasons(registry, "team/app") == ["created", EXPIRED_STAGING_REASON]
    content = await registry.version_content("team/app")
    assert set(content["manifest"]) == {str(digest)}
    assert set(content["blob"]) == {str(config), str(layer)}


@pytest_twisted.ensureDeferred
async def test_index_and_children_expire_into_one_version(world):
    registry, expiry, clock = world
    children = []
    for _ in range(2):
        config, layer = await push_blob(registry, "team/app"), await push_blob(registry, "team/app")
        body = image_manifest(config, [layer])
        await registry.put_manifest("team/app", str(Digest.of(body)), body, OCI_MANIFEST)
        children.append((Digest.of(body), len(body)))
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": str(d), "size": n} for d, n in children
        ],
    }).encode()
    await registry.put_manifest("team/app", str(Digest.of(index)), index, OCI_INDEX)
    clock.advance(STAGING_TTL + 1)

    report = await expiry.run()

    assert report.promoted == 1
    content = await registry.version_content("team/app")
    assert set(content["manifest"]) == {str(Digest.of(index)), *(str(d) for d, _ in children)}


@pytest_twisted.ensureDeferred
async def test_incomplete_leftovers_are_discarded_not_promoted(world):
    registry, expiry, clock = world
    layer = await push_blob(registry, "team/app")
    missing_config = Digest.of(b"never uploaded")
    body = image_manifest(missing_config, [layer])
    await registry.put_manifest("team/app", str(Digest.of(body)), body, OCI_MANIFEST)
    stray_blob = await push_blob(registry, "team/app")
    clock.advance(STAGING_TTL + 1)

    report = await expiry.run()

    assert report.promoted == 0
    assert report.discarded == 3  # the manifest, its layer, the stray blob
    assert await _reasons(registry, "team/app") == ["created"]
    for digest in (layer, stray_blob):
        try:
            await registry.blob_size("team/app", str(digest))
        except RegistryError as e:
            assert e.code.name == "BLOB_UNKNOWN"
        else:
            raise AssertionError(f"{digest} is still visible")


@pytest_twisted.ensureDeferred
async def test_abandoned_upload_is_purged_with_its_bytes(world):
    registry, expiry, clock = world
    uuid = await registry.start_upload("team/app")
    upload = await registry.open_upload("team/app", uuid, 0, None)
    upload.append(b"x" * 1000)
    await registry.release_upload(uuid, upload)

    assert (await expiry.run()).uploads == 0
    clock.advance(UPLOAD_TTL + 1)
    assert (await expiry.run()).uploads == 1

    try:
        await registry.upload_size("team/app", uuid)
    except RegistryError as e:
        assert e.code.name == "BLOB_UPLOAD_UNKNOWN"
    else:
        raise AssertionError("the upload is still there")
    assert await registry.blobs.upload_size(uuid) is None


@pytest_twisted.ensureDeferred
async def test_upload_written_recently_is_kept(world):
    registry, expiry, clock = world
    uuid = await registry.start_upload("team/app")
    clock.advance(UPLOAD_TTL - 10)
    upload = await registry.open_upload("team/app", uuid, 0, None)
    upload.append(b"still going")
    await registry.release_upload(uuid, upload)
    clock.advance(20)

    assert (await expiry.run()).uploads == 0
    assert await registry.upload_size("team/app", uuid) == len(b"still going")


@pytest_twisted.ensureDeferred
async def test_chunks_in_quick_succession_then_a_late_one_keep_the_upload_alive(world):
    # Chunks right after one another leave the row alone; one that comes
    # later than that still counts as a write.
    registry, expiry, clock = world
    uuid = await registry.start_upload("team/app")
    for chunk in (b"a", b"b", b"c"):
        upload = await registry.open_upload("team/app", uuid, None, None)
        upload.append(chunk)
        await registry.release_upload(uuid, upload)
    clock.advance(UPLOAD_TTL - 10)
    upload = await registry.open_upload("team/app", uuid, None, None)
    upload.append(b"d")
    await registry.release_upload(uuid, upload)
    clock.advance(20)

    assert (await expiry.run()).uploads == 0
    assert await registry.upload_size("team/app", uuid) == 4
