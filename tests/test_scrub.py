"""Scrub finds missing and corrupt blobs, and a corrupt blob is never served again."""

from __future__ import annotations

import pytest_twisted

from ocireg.domain.scrub import Scrubber
from ocireg.errors import RegistryError
from tests.domain_helpers import local_registry, push_blob


@pytest_twisted.async_yield_fixture
async def registry(tmp_path):
    async with local_registry(tmp_path) as registry:
        yield registry


@pytest_twisted.ensureDeferred
async def test_healthy_store_scrubs_clean(registry):
    for _ in range(3):
        await push_blob(registry, "team/app")
    report = await Scrubber(registry.metadata, registry.blobs).scrub()
    assert (report.checked, report.healthy) == (3, True)


@pytest_twisted.ensureDeferred
async def test_missing_and_corrupt_blobs_are_reported(registry):
    missing = await push_blob(registry, "team/app")
    corrupt = await push_blob(registry, "team/app")
    await push_blob(registry, "team/app")
    await registry.blobs.delete_blob(missing)
    with open(registry.blobs.blob_path(corrupt), "r+b") as f:
        f.write(b"bitrot")

    report = await Scrubber(registry.metadata, registry.blobs).scrub()

    assert report.checked == 3
    assert report.missing == (str(missing),)
    assert report.corrupt == (str(corrupt),)


@pytest_twisted.ensureDeferred
async def test_corrupt_blob_is_not_served_after_scrub(registry):
    corrupt = await push_blob(registry, "team/app")
    with open(registry.blobs.blob_path(corrupt), "r+b") as f:
        f.write(b"bitrot")

    await Scrubber(registry.metadata, registry.blobs).scrub()

    try:
        _, _, f = await registry.open_blob("team/app", str(corrupt))
    except RegistryError as e:
        assert e.code.name == "BLOB_UNKNOWN"
    else:
        f.close()
        raise AssertionError("a corrupt blob is still served")


@pytest_twisted.ensureDeferred
async def test_missing_blob_answers_404_to_head_after_scrub(registry):
    missing = await push_blob(registry, "team/app")
    await registry.blobs.delete_blob(missing)

    await Scrubber(registry.metadata, registry.blobs).scrub()

    try:
        await registry.blob_size("team/app", str(missing))
    except RegistryError as e:
        assert e.code.name == "BLOB_UNKNOWN"
    else:
        raise AssertionError("HEAD still claims a blob whose bytes are gone")
