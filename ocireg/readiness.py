"""What `/readyz` asks: does each store answer, and is there room on the disk."""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from ocireg.api.health import Probe
from ocireg.db.probe import answers
from ocireg.interfaces import IMetadataStore
from ocireg.storage.space import FreeSpace


def store_probes(
    metadata: IMetadataStore, data_dir: str, blob_pool: ThreadPool, reactor,
    space: FreeSpace | None,
) -> dict[str, Probe]:
    """The probes of the metadata store, the blob store in `data_dir` and its free `space`."""

    async def metadata_answers() -> None:
        await answers(metadata)

    def blob_store_answers() -> Deferred:
        # A stat and an access check: cheap, but on a disk that hangs (NFS) they
        # hang too, so off the reactor thread.
        return deferToThreadPool(reactor, blob_pool, _check_directory, data_dir)

    probes: dict[str, Probe] = {"metadata": metadata_answers, "blobs": blob_store_answers}
    if space is not None:
        probes["free_space"] = space.probe
    return probes


def _check_directory(path: str) -> None:
    for where in (path, os.path.join(path, "blobs"), os.path.join(path, "uploads")):
        if not os.path.isdir(where):
            raise OSError(f"{where} is not a directory")
        if not os.access(where, os.W_OK | os.X_OK):
            raise OSError(f"{where} is not writable")
