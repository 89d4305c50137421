"""Garbage collection: what it keeps, what it removes, and when."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from ocireg.domain.gc import GarbageCollector
from ocireg.domain.registry_operations import RegistryOperations
from tests.domain_helpers import local_registry, push_blob, push_image

GRACE = 3600.0


class World:
    """A registry and a collector sharing one clock that starts at the wall time."""

    def __init__(
        self, registry: RegistryOperations, collector: GarbageCollector, clock: Clock
    ) -> None:
        self.registry = registry
        self.collector = collector
        self.clock = clock

    def later(self, seconds: float = GRACE + 1) -> None:
        self.clock.advance(seconds)

    async def blob_exists(self, name: str, digest) -> bool:
        try:
            await self.registry.blob_size(name, str(digest))
        except Exception:
            return False
        return True

    async def bytes_stored(self, digest) -> bool:
        return await self.registry.blobs.blob_size(digest) is not None

    async def blob_rows(self) -> int:
        rows = await self.registry.metadata.transact(
            lambda txn: txn.execute("SELECT count(*) FROM blobs")
        )
        return rows[0][0]


@pytest_twisted.async_yield_fixture
async def world(tmp_path):
    clock = Clock()
    # Blob files carry wall-clock mtimes: start the fake clock there.
    clock.advance(time.time())
    async with local_registry(tmp_path, clock) as registry:
        yield World(registry, GarbageCollector(registry.metadata, registry.blobs, clock, GRACE),
                    clock)


async def _discard_staging(registry: RegistryOperations, name: str) -> None:
    await registry.metadata.transact(
        lambda txn: txn.execute(
            "DELETE FROM staged_content WHERE repository_id = "
            "(SELECT id FROM repositories WHERE name = ?)",
            (name,),
        )
    )


@pytest_twisted.ensureDeferred
async def test_orphan_blob_goes_after_the_grace_period(world):
    orphan = await push_blob(world.registry, "team/app")
    await _discard_staging(world.registry, "team/app")

    early = await world.collector.collect()
    assert early.blobs == 0
    assert await world.bytes_stored(orphan)

    world.later()
    report = await world.collector.collect()
    assert (report.blobs, report.bytes) == (1, 4096)
    assert not await world.bytes_stored(orphan)
    assert await world.blob_rows() == 0


@pytest_twisted.ensureDeferred
async def test_dry_run_reports_without_removing(world):
    orphan = await push_blob(world.registry, "team/app")
    await _discard_staging(world.registry, "team/app")
    world.later()

    report = await world.collector.collect(dry_run=True)

    assert (report.dry_run, report.blobs, report.bytes) == (True, 1, 4096)
    assert await world.bytes_stored(orphan)
    assert await world.blob_rows() == 1


@pytest_twisted.ensureDeferred
async def test_staged_blob_survives(world):
    staged = await push_blob(world.registry, "team/app")
    world.later()

    report = await world.collector.collect()

    assert report.blobs == 0
    assert await world.blob_exists("team/app", staged)
    assert await world.bytes_stored(staged)


@pytest_twisted.ensureDeferred
async def test_blob_only_in_an_old_version_survives(world):
    digest, needed = await push_image(world.registry, "team/app", "1.0")
    await world.registry.delete_manifest("team/app", str(digest))
    world.later()

    report = await world.collector.collect()

    assert report.blobs == 0 and report.manifests == 0
    for blob in needed:
        assert await world.bytes_stored(blob)


@pytest_twisted.ensureDeferred
async def test_blob_shared_with_another_repository_survives_its_discard(world):
    _, (_, layer) = await push_image(world.registry, "team/one", "1.0")
    # The same layer staged in a second repository, then discarded there.
    await world.registry.mount("team/two", "team/one", str(layer))
    await _discard_staging(world.registry, "team/two")
    world.later()

    report = await world.collector.collect()

    assert report.blobs == 0
    assert await world.blob_exists("team/one", layer)


@pytest_twisted.ensureDeferred
async def test_open_upload_bytes_are_not_collected(world):
    uuid = await world.registry.start_upload("team/app")
    upload = await world.registry.open_upload("team/app", uuid, 0, None)
    upload.append(b"half a layer")
    await world.registry.release_upload(uuid, upload)
    world.later()

    await world.collector.collect()

    assert await world.registry.upload_size("team/app", uuid) == len(b"half a layer")


@pytest_twisted.ensureDeferred
async def test_stray_blob_file_without_metadata_goes_after_grace(world):
    orphan = await push_blob(world.registry, "team/app")
    # A crash after the metadata went but before the bytes did.
    await world.registry.metadata.transact(
        lambda txn: txn.execute("DELETE FROM blobs WHERE digest = ?", (str(orphan),))
    )
    await _discard_staging(world.registry, "team/app")

    assert (await world.collector.collect()).stray_files == 0
    world.later()
    assert (await world.collector.collect()).stray_files == 1
    assert not await world.bytes_stored(orphan)


@pytest_twisted.ensureDeferred
async def test_blob_uploaded_again_during_collection_keeps_its_new_bytes(world):
    data = b"layer bytes" * 100
    orphan = await push_blob(world.registry, "team/app", data)
    await _discard_staging(world.registry, "team/app")
    world.later()
    # Collected rows first; the same blob is uploaded again before its bytes
    # would be removed: the fresh file is younger than the grace period.
    await world.registry.metadata.transact(
        lambda txn: txn.execute("DELETE FROM blobs WHERE digest = ?", (str(orphan),))
    )
    await push_blob(world.registry, "team/other", data)

    await world.collector.collect()

    assert await world.blob_exists("team/other", orphan)
    assert await world.bytes_stored(orphan)


@pytest.mark.parametrize("dry_run", [False, True])
@pytest_twisted.ensureDeferred
async def test_each_run_is_kept_for_the_api(world, dry_run):
    await world.collector.collect(dry_run=dry_run)
    assert [r.dry_run for r in world.collector.reports] == [dry_run]


@pytest_twisted.ensureDeferred
async def test_blob_file_being_committed_survives_a_zero_grace_collection(world):
    # A blob's file lands a moment before its metadata row: with a grace
    # period of zero, the sweep must still not take it.
    committing = await push_blob(world.registry, "team/app")
    await world.registry.metadata.transact(
        lambda txn: txn.execute("DELETE FROM blobs WHERE digest = ?", (str(committing),))
    )
    eager = GarbageCollector(world.registry.metadata, world.registry.blobs, world.clock, 0.0)

    assert (await eager.collect()).stray_files == 0
    assert await world.bytes_stored(committing)
