"""ocireg.testing's fakes are enough to run the registry's domain on, with no disk."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import Clock

from ocireg.domain.errors import BlobBytesMissing
from ocireg.domain.registry_operations import RegistryOperations
from ocireg.manifest import OCI_MANIFEST
from ocireg.testing import MemoryBlobStore, memory_metadata_store
from tests.domain_helpers import image_manifest, push_blob, push_image

NAME = "team/app"


@pytest_twisted.async_yield_fixture
async def registry():
    clock = Clock()
    clock.advance(1_000_000)
    metadata = await memory_metadata_store(reactor)
    try:
        yield RegistryOperations(metadata, MemoryBlobStore(clock), clock)
    finally:
        await metadata.close()


@pytest_twisted.ensureDeferred
async def test_an_image_pushed_to_a_registry_on_the_fakes_is_served(registry):
    digest, blobs = await push_image(registry, NAME, "v1")
    stored = await registry.get_manifest(NAME, "v1")
    assert stored.digest == digest
    assert await registry.tags(NAME, None, None) == ["v1"]
    for blob in blobs:
        f = await registry.open_blob(NAME, str(blob))
        assert f is not None


@pytest_twisted.ensureDeferred
async def test_a_tag_write_whose_blob_bytes_are_gone_from_the_fake_is_refused(registry):
    config = await push_blob(registry, NAME)
    layer = await push_blob(registry, NAME)
    await registry.blobs.delete_blob(layer)
    with pytest.raises(BlobBytesMissing):
        await registry.put_manifest(NAME, "v1", image_manifest(config, [layer]), OCI_MANIFEST)
    assert await registry.tags(NAME, None, None) == []
