"""Upload sessions over the stores: opening, appending, completing and cancelling them.

Each method validates its input, runs the domain functions of `uploads` and
`staging` in transactions of the metadata store, and moves bytes through the
blob store. `RegistryOperations` adds the rest of the registry API to these.
Nothing here knows of HTTP: an answer's headers (where to resume an upload,
when to try again) are the HTTP layer's, built from the typed errors' fields
(`ocireg.domain.errors`).
"""

from __future__ import annotations

import contextlib
import uuid as uuidlib
from collections import Counter

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocireg.digest import Digest
from ocireg.domain import repositories, staging, uploads
from ocireg.domain.errors import (
    DigestMismatch,
    TooManyUploads,
    UploadBusy,
    UploadRangeInvalid,
    UploadUnknown,
)
from ocireg.errors import RegistryError
from ocireg.interfaces import IBlobStore, IMetadataStore, ITransaction, IUploadFile, UploadInUse
from ocireg.names import validate_name
from ocireg.storage.space import FreeSpace

_log = Logger()

#: An upload's `updated` (what purging goes by) is kept to within this many
#: seconds of its last write: a client sending chunk after chunk has its row
#: written once a second, not once a chunk.
_TOUCH_EVERY = 1.0


@attrs.define
class UploadOperations:
    """Upload sessions of every repository."""

    metadata: IMetadataStore
    blobs: IBlobStore
    clock: IReactorTime
    #: Uploads this process is writing to right now, with their rows' `updated`
    #: as of opening them; a second writer is refused.
    _busy: dict[str, float] = attrs.field(factory=dict, kw_only=True)
    #: Upload sessions one client (see `uploads.client_key`) may have open; None: no cap.
    max_uploads_per_client: int | None = attrs.field(default=None, kw_only=True)
    #: The data directory's free space: new upload bodies are refused below its reserve.
    space: FreeSpace | None = attrs.field(default=None, kw_only=True)
    #: Digests whose blob this process is committing right now, and how many times.
    _committing: Counter = attrs.field(factory=Counter, kw_only=True)

    def _now(self) -> float:
        return self.clock.seconds()

    async def _make_room(self) -> None:
        """STORAGE_FULL unless the data directory has room above its reserve."""
        if self.space is not None:
            await self.space.check()

    def is_writing(self, uuid: str) -> bool:
        """Is a request of this process writing to upload `uuid` right now?"""
        return uuid in self._busy

    async def start_upload(
        self, name: str, uuid: str | None = None, client: str | None = None
    ) -> str:
        """Open a new upload session for repository `name`; its uuid (`uuid` if given).

        `client` (`uploads.client_key`) is who opens it: TOO_MANY_REQUESTS
        when they already have `max_uploads_per_client` sessions open.
        """
        uuid, _ = await self._start_upload(name, uuid, client)
        return uuid

    async def _start_upload(
        self, name: str, uuid: str | None, client: str | None
    ) -> tuple[str, float]:
        """`start_upload`: the uuid, and when the session was recorded."""
        validate_name(name)
        await self._make_room()
        uuid = uuid or str(uuidlib.uuid4())
        await self.blobs.create_upload(uuid)
        now = self._now()
        limit = self.max_uploads_per_client

        async def create(txn: ITransaction) -> None:
            while not await uploads.create_upload(txn, uuid, name, now, client, limit):
                # A pinned distribution: refused before the client sends a byte
                # (unless unpinned since the INSERT looked: then it goes in).
                await repositories.check_writable(txn, name)
                if client is not None and limit is not None and (
                    await uploads.open_uploads(txn, client) >= limit
                ):
                    raise TooManyUploads(limit)

        try:
            await self.metadata.transact(create)
        except BaseException:
            await self.blobs.delete_upload(uuid)
            raise
        return uuid, now

    async def mount(self, name: str, source: str, digest: str) -> tuple[Digest, int] | None:
        """Stage into `name` a blob that `source` holds; None when it cannot be mounted."""
        validate_name(name)
        try:
            validate_name(source)
            parsed = Digest.parse(digest)
        except RegistryError:
            return None
        now = self._now()
        size = await self.metadata.transact(
            lambda txn: staging.mount_blob(txn, name, source, parsed, now)
        )
        return None if size is None else (parsed, size)

    async def upload_size(self, name: str, uuid: str) -> int:
        validate_name(name)
        await self._find_upload(name, uuid)
        size = await self.blobs.upload_size(uuid)
        if size is None:
            raise UploadUnknown(uuid)
        return size

    async def open_upload(
        self, name: str, uuid: str, start: int | None, length: int | None
    ) -> IUploadFile:
        """The upload `uuid` of `name`, open to append a chunk at `start`.

        `start` (where the chunk says it starts) must be the upload's current
        size, else UPLOAD_RANGE_INVALID; the upload is then held by this writer until
        `release_upload`. A body of `length` bytes (None: unknown) is refused
        below the free space reserve; an empty one (the PUT that completes an
        upload) is not, as it only needs the metadata room the reserve keeps.
        """
        validate_name(name)
        found = await self._find_upload(name, uuid)
        if length != 0:
            await self._make_room()
        return await self._open_upload_file(name, uuid, start, found.updated)

    async def _find_upload(self, name: str, uuid: str) -> uploads.Upload:
        """Upload `uuid` in progress in `name`, else BLOB_UPLOAD_UNKNOWN."""
        # One SELECT, read-only: the store may skip BEGIN and COMMIT.
        return await self.metadata.transact(
            lambda txn: uploads.find_upload(txn, name, uuid), readonly=True
        )

    async def _open_upload_file(
        self, name: str, uuid: str, start: int | None, updated: float
    ) -> IUploadFile:
        """`open_upload` of an upload known to be `name`'s, its row last `updated` then."""
        if uuid in self._busy:
            raise await self._in_use(name, uuid)
        self._busy[uuid] = updated
        try:
            try:
                upload = await self.blobs.open_upload(uuid)
            except UploadInUse:
                raise await self._in_use(name, uuid) from None
            if upload is None:
                raise UploadUnknown(uuid)
            if start is not None and start != upload.size:
                size = upload.size
                await upload.close()
                raise UploadRangeInvalid(name, uuid, size, start)
        except BaseException:
            self._busy.pop(uuid, None)
            raise
        return upload

    async def _in_use(self, name: str, uuid: str) -> UploadRangeInvalid:
        size = await self.blobs.upload_size(uuid) or 0
        return UploadRangeInvalid(name, uuid, size)

    async def new_upload_for_body(
        self, name: str, uuid: str | None = None, client: str | None = None
    ) -> tuple[str, IUploadFile]:
        """A new upload session, open for appending, for a monolithic POST (as `start_upload`)."""
        uuid, created = await self._start_upload(name, uuid, client)
        return uuid, await self._open_upload_file(name, uuid, 0, created)

    async def release_upload(self, uuid: str, upload: IUploadFile) -> int:
        """Close a chunk's writer (what it received stays, the session resumable); the size."""
        try:
            await upload.close()
        finally:
            updated = self._busy.pop(uuid, None)
        now = self._now()
        if updated is None or now - updated >= _TOUCH_EVERY:
            await self.metadata.transact(lambda txn: uploads.touch_upload(txn, uuid, now))
        return upload.size

    async def complete_upload(
        self, name: str, uuid: str, digest: str, upload: IUploadFile
    ) -> tuple[Digest, int]:
        """Verify an upload against `digest` and make it a blob of `name`'s staging version.

        On a mismatch the upload is cancelled and nothing becomes visible. When
        the blob's metadata cannot be committed (a full disk, a database
        outage) the upload is left as it was, to be completed again.
        """
        try:
            try:
                expected = Digest.parse(digest)
            except RegistryError:
                await self._cancel(uuid, upload)
                raise
            try:
                actual = await upload.digest(expected.algorithm)
            except BaseException:
                # A write failed (a full disk): what was written stays, resumable.
                with contextlib.suppress(Exception):  # the same failure, raised below
                    await upload.close()
                raise
            size = upload.size
            await upload.close()
            if actual != expected:
                await self._cancel(uuid, None)
                raise DigestMismatch("upload", str(expected), str(actual))
            key = str(expected)
            self._committing[key] += 1
            try:
                await self._commit_blob(name, uuid, expected, size)
            finally:
                self._committing[key] -= 1
                if not self._committing[key]:
                    del self._committing[key]
            return expected, size
        finally:
            self._busy.pop(uuid, None)

    async def _commit_blob(self, name: str, uuid: str, digest: Digest, size: int) -> None:
        """Upload `uuid`'s bytes become blob `digest`, staged in `name`; or the upload stays."""
        created = await self.blobs.commit_upload(uuid, digest)
        now = self._now()

        async def commit(txn) -> None:
            await staging.stage_blob(txn, name, digest, size, now)
            await uploads.delete_upload(txn, uuid)

        try:
            await self.metadata.transact(commit)
        except BaseException:
            if created:
                await self._restore_upload(uuid, digest)
            raise
        if not created:
            try:
                await self.blobs.delete_upload(uuid)
            except Exception:
                # Committed all the same; the purge of abandoned uploads takes the bytes.
                _log.failure("removing the bytes of completed upload {uuid}", uuid=uuid)

    async def _restore_upload(self, uuid: str, digest: Digest) -> None:
        """After a failed commit of blob `digest`: its bytes back to upload `uuid`, if it is open.

        A commit whose outcome is unknown (a connection lost during COMMIT)
        may have gone through: then the upload's row is gone and the blob's
        bytes stay where its row says. Another completion of the same digest
        in this process relies on the bytes too: they stay for it (this
        upload is then lost, as a client's retry of it learns).
        """
        try:
            still_open = await self.metadata.transact(
                lambda txn: uploads.upload_exists(txn, uuid), readonly=True
            )
        except Exception:
            still_open = True  # unknown: most likely rolled back, as the commit said
        if not still_open or self._committing[str(digest)] > 1:
            return
        try:
            await self.blobs.restore_upload(uuid, digest)
        except Exception:
            _log.failure("restoring upload {uuid} after its blob's commit failed", uuid=uuid)

    async def _cancel(self, uuid: str, upload: IUploadFile | None) -> None:
        if upload is not None:
            await upload.close()
        # The bytes first: on a full disk, deleting the row needs the room they free.
        await self.blobs.delete_upload(uuid)
        await self.metadata.transact(lambda txn: uploads.delete_upload(txn, uuid))

    async def abandon_upload(self, uuid: str) -> None:
        """Remove an upload whose client cannot resume it (a monolithic push that failed)."""
        try:
            await self._cancel(uuid, None)
        except Exception:
            # The purge of abandoned uploads takes it later.
            _log.failure("removing failed monolithic upload {uuid}", uuid=uuid)

    async def cancel_upload(self, name: str, uuid: str) -> None:
        validate_name(name)
        await self._find_upload(name, uuid)
        if uuid in self._busy:
            raise UploadBusy(uuid)
        await self._cancel(uuid, None)
