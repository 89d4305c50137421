"""Driving the registry's operations directly, without HTTP, for domain tests."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.interfaces import IReactorTime
from twisted.python.threadpool import ThreadPool

from ocireg.db.sqlite import SQLiteMetadataStore
from ocireg.digest import Digest
from ocireg.domain.registry_operations import RegistryOperations
from ocireg.manifest import OCI_MANIFEST
from ocireg.storage.filesystem import FilesystemBlobStore


@contextlib.asynccontextmanager
async def local_registry(
    path: Path, clock: IReactorTime = reactor
) -> AsyncIterator[RegistryOperations]:
    """A registry on SQLite and files under `path`, telling time by `clock`; closed after."""
    pool = ThreadPool(1, 4, name="test-blobs")
    pool.start()
    blobs = FilesystemBlobStore(str(path), reactor, pool)
    metadata = await SQLiteMetadataStore.open(str(path / "metadata.sqlite3"), reactor)
    try:
        yield RegistryOperations(metadata, blobs, clock)
    finally:
        await metadata.close()
        pool.stop()


async def push_blob(registry: RegistryOperations, name: str, data: bytes | None = None) -> Digest:
    """Upload `data` (random by default) as a blob into `name`'s staging."""
    data = os.urandom(4096) if data is None else data
    uuid = await registry.start_upload(name)
    upload = await registry.open_upload(name, uuid, 0, None)
    upload.append(data)
    digest, _ = await registry.complete_upload(name, uuid, str(Digest.of(data)), upload)
    return digest


def image_manifest(config: Digest, layers: list[Digest], size: int = 4096) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": str(config),
                "size": size,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": str(layer),
                    "size": size,
                }
                for layer in layers
            ],
        }
    ).encode()


async def push_image(
    registry: RegistryOperations, name: str, reference: str, layers: list[Digest] | None = None
) -> tuple[Digest, list[Digest]]:
    """Push a config, the given (or one new) layer and a manifest by `reference`.

    Returns the manifest digest and the blobs it needs.
    """
    config = await push_blob(registry, name)
    if layers is None:
        layers = [await push_blob(registry, name)]
    body = image_manifest(config, layers)
    pushed = await registry.put_manifest(name, reference, body, OCI_MANIFEST)
    return pushed.digest, [config, *layers]
