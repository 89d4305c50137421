"""The registry's operations, as the HTTP layer calls them.

Each method validates its input, runs the domain functions of `versions` and
`uploads` in transactions of the metadata store, and moves bytes through the
blob store. Nothing here knows of HTTP.
"""

from __future__ import annotations

import contextlib
import uuid as uuidlib
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ocireg import history, uploads, versions
from ocireg.cache import ReadCache
from ocireg.digest import Digest, is_digest
from ocireg.errors import (
    BLOB_UNKNOWN,
    BLOB_UPLOAD_INVALID,
    BLOB_UPLOAD_UNKNOWN,
    DIGEST_INVALID,
    MANIFEST_INVALID,
    MANIFEST_UNKNOWN,
    SIZE_INVALID,
    TOO_MANY_REQUESTS,
    UNAVAILABLE,
    UPLOAD_RANGE_INVALID,
    RegistryError,
)
from ocireg.interfaces import (
    IBlobStore,
    IMetadataStore,
    ITransaction,
    IUploadFile,
    UploadInUse,
)
from ocireg.manifest import Descriptor, Manifest, parse_manifest
from ocireg.names import validate_name, validate_tag
from ocireg.storage.space import FreeSpace

_log = Logger()
T = TypeVar("T")

#: An upload's `updated` (what purging goes by) is kept to within this many
#: seconds of its last write: a client sending chunk after chunk has its row
#: written once a second, not once a chunk.
_TOUCH_EVERY = 1.0

#: Seconds a client over its upload sessions is told to wait: sessions end as
#: pushes finish, so soon, unless the client left them open to expire.
UPLOADS_RETRY_AFTER = 60


@attrs.frozen
class PushedManifest:
    digest: Digest
    subject: Digest | None


def upload_range(size: int) -> str:
    """The `Range` header value for an upload holding `size` bytes (docker wants it bare)."""
    return f"0-{max(size - 1, 0)}"


@attrs.define
class Registry:
    """Blobs, uploads, manifests and tags of every repository."""

    metadata: IMetadataStore
    blobs: IBlobStore
    clock: IReactorTime
    #: Uploads this process is writing to right now, with their rows' `updated`
    #: as of opening them; a second writer is refused.
    _busy: dict[str, float] = attrs.field(factory=dict)
    #: Answers of manifest and blob lookups, dropped whenever `metadata` changes;
    #: None when the store cannot tell this process of every change (see ocireg.cache).
    cache: ReadCache | None = None
    #: Upload sessions one client (see `uploads.client_key`) may have open; None: no cap.
    max_uploads_per_client: int | None = None
    #: The data directory's free space: new upload bodies are refused below its reserve.
    space: FreeSpace | None = None
    #: Digests whose blob this process is committing right now, and how many times.
    _committing: Counter = attrs.field(factory=Counter)

    def _now(self) -> float:
        return self.clock.seconds()

    async def _make_room(self) -> None:
        """STORAGE_FULL unless the data directory has room above its reserve."""
        if self.space is not None:
            await self.space.check()

    def is_writing(self, uuid: str) -> bool:
        """Is a request of this process writing to upload `uuid` right now?"""
        return uuid in self._busy

    # Blobs

    async def _remembered(
        self, key: tuple, read: Callable[[], Awaitable[T]], size: Callable[[T], int]
    ) -> T:
        """`await read()`, or what it gave last time if the store has not changed since.

        Only answers are remembered: a read that raises (invalid, unknown) is not.
        When the store cannot be reached, an answer kept from before may do (see
        ocireg.cache).
        """
        cache = self.cache
        if cache is None:
            return await read()
        found = cache.get(key)
        if found is not None:
            return found
        generation = cache.generation
        try:
            value = await read()
        except RegistryError as e:
            if e.code == UNAVAILABLE:
                stale = cache.stale(key)
                if stale is not None:
                    return stale
            raise
        cache.put(key, value, size(value), generation)
        return value

    async def _blob_record(self, name: str, digest: str) -> tuple[Digest, int]:
        """The digest and recorded size of a blob `name` holds, else BLOB_UNKNOWN."""

        async def read() -> tuple[Digest, int]:
            validate_name(name)
            parsed = Digest.parse(digest)
            # One SELECT, read-only: the store may skip BEGIN and COMMIT.
            size = await self.metadata.transact(
                lambda txn: versions.blob_size(txn, name, parsed), readonly=True
            )
            if size is None:
                raise RegistryError(BLOB_UNKNOWN, f"blob {parsed} is not in repository {name!r}",
                                    {"digest": str(parsed)})
            return parsed, size

        return await self._remembered(("blob", name, digest), read, lambda _: 200)

    async def blob_size(self, name: str, digest: str) -> tuple[Digest, int]:
        """The digest and size of a blob `name` holds, as a HEAD answers: its bytes included.

        The record may be remembered; the bytes are looked at every time, so
        that HEAD agrees with GET once they are gone.
        """
        parsed, size = await self._blob_record(name, digest)
        if await self.blobs.blob_size(parsed) is None:
            raise await self._bytes_gone(parsed)
        return parsed, size

    async def open_blob(self, name: str, digest: str):
        """The size of a blob `name` holds, and a file to read it from."""
        parsed, size = await self._blob_record(name, digest)
        f = await self.blobs.open_blob(parsed)
        if f is None:
            raise await self._bytes_gone(parsed)
        return parsed, size, f

    async def _bytes_gone(self, digest: Digest) -> RegistryError:
        """Forget blob `digest`, recorded but without bytes; the BLOB_UNKNOWN to answer.

        A client told 404 uploads it again, which heals the store; while the
        record stayed, HEAD would tell a push to skip the upload.
        """
        _log.error("blob {digest} is recorded but its bytes are missing", digest=str(digest))
        await self._forget_gone([digest])
        return RegistryError(
            BLOB_UNKNOWN, f"the bytes of blob {digest} are missing", {"digest": str(digest)}
        )

    async def _forget_gone(self, digests: list[Digest]) -> None:
        """Drop the records of `digests` whose bytes are still missing, looked at once more.

        Looked at in the transaction: a blob uploaded again since the first look
        keeps its record.
        """

        async def forget(txn: ITransaction) -> None:
            gone = await self.blobs.missing_blobs(digests)
            if gone:
                await versions.forget_blobs(txn, gone)

        await self.metadata.transact(forget)

    async def delete_blob(self, name: str, digest: str) -> None:
        validate_name(name)
        parsed = Digest.parse(digest)
        now = self._now()
        await self.metadata.transact(
            lambda txn: _retaining(txn, name, versions.delete_blob(txn, name, parsed, now))
        )

    # Uploads

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
                await versions.check_writable(txn, name)
                if client is not None and limit is not None and (
                    await uploads.open_uploads(txn, client) >= limit
                ):
                    raise RegistryError(
                        TOO_MANY_REQUESTS,
                        f"{limit} upload sessions are open already: finish or cancel "
                        "some before opening more",
                        {"limit": limit},
                        {"Retry-After": str(UPLOADS_RETRY_AFTER)},
                    )

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
            lambda txn: versions.mount_blob(txn, name, source, parsed, now)
        )
        return None if size is None else (parsed, size)

    async def upload_size(self, name: str, uuid: str) -> int:
        validate_name(name)
        await self._find_upload(name, uuid)
        size = await self.blobs.upload_size(uuid)
        if size is None:
            raise RegistryError(BLOB_UPLOAD_UNKNOWN, f"upload {uuid!r} has no data", {"uuid": uuid})
        return size

    async def open_upload(
        self, name: str, uuid: str, start: int | None, length: int | None
    ) -> IUploadFile:
        """The upload `uuid` of `name`, open to append a chunk at `start`.

        `start` (from Content-Range) must be the upload's current size, else
        416 BLOB_UPLOAD_INVALID; the upload is then held by this writer until
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
                raise RegistryError(
                    BLOB_UPLOAD_UNKNOWN, f"upload {uuid!r} has no data", {"uuid": uuid}
                )
            if start is not None and start != upload.size:
                size = upload.size
                await upload.close()
                raise RegistryError(
                    UPLOAD_RANGE_INVALID,
                    f"chunk starts at {start}, but the upload holds {size} bytes",
                    {"uuid": uuid, "size": size},
                    {"Range": upload_range(size), "Location": upload_location(name, uuid)},
                )
        except BaseException:
            self._busy.pop(uuid, None)
            raise
        return upload

    async def _in_use(self, name: str, uuid: str) -> RegistryError:
        size = await self.blobs.upload_size(uuid) or 0
        return RegistryError(
            UPLOAD_RANGE_INVALID,
            "another request is writing to this upload",
            {"uuid": uuid},
            {"Range": upload_range(size), "Location": upload_location(name, uuid)},
        )

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
                raise RegistryError(
                    DIGEST_INVALID,
                    f"the upload's digest is {actual}, not {expected}",
                    {"expected": str(expected), "actual": str(actual)},
                )
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
            await versions.stage_blob(txn, name, digest, size, now)
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
            raise RegistryError(
                BLOB_UPLOAD_INVALID, "a request is writing to this upload", {"uuid": uuid}
            )
        await self._cancel(uuid, None)

    # Manifests

    async def get_manifest(self, name: str, reference: str) -> versions.StoredManifest:
        async def read() -> versions.StoredManifest:
            validate_name(name)
            _validate_reference(reference, pushing=False)
            # One SELECT, read-only: the store may skip BEGIN and COMMIT.
            return await self.metadata.transact(
                lambda txn: versions.get_manifest(txn, name, reference), readonly=True
            )

        return await self._remembered(
            ("manifest", name, reference), read, lambda m: len(m.body) + 200
        )

    async def put_manifest(
        self, name: str, reference: str, body: bytes, content_type: str
    ) -> PushedManifest:
        """Store a pushed manifest: promoted under its tag, or staged when pushed by digest.

        A manifest with a `subject` is promoted at once, tag or not.
        """
        validate_name(name)
        _validate_reference(reference, pushing=True)
        manifest = parse_manifest(body, content_type)
        tag = None
        if is_digest(reference):
            wanted = Digest.parse(reference)
            actual = Digest.of(body, wanted.algorithm)
            if actual != wanted:
                raise RegistryError(
                    DIGEST_INVALID,
                    f"the manifest's digest is {actual}, not {wanted}",
                    {"expected": str(wanted), "actual": str(actual)},
                )
            if wanted.algorithm != "sha256":
                manifest = attrs.evolve(manifest, digest=wanted)
        else:
            tag = reference
        now = self._now()
        if tag is None and manifest.subject is None:
            await self.metadata.transact(
                lambda txn: versions.stage_manifest(txn, name, manifest, now)
            )
        else:
            try:
                await self.metadata.transact(
                    lambda txn: _promoting(txn, self.blobs, name, manifest, tag, now)
                )
            except versions.BlobBytesMissing as e:
                gone = e.digests
                _log.error("blobs {digests} are recorded but their bytes are gone",
                           digests=[str(d) for d in gone])
                await self._forget_gone(gone)
                raise
        return PushedManifest(manifest.digest, manifest.subject)

    async def delete_manifest(self, name: str, reference: str) -> None:
        """Delete a tag, or a manifest by digest with every tag pointing at it."""
        validate_name(name)
        _validate_reference(reference, pushing=False)
        now = self._now()
        if is_digest(reference):
            digest = str(Digest.parse(reference))
            await self.metadata.transact(
                lambda txn: _retaining(txn, name, versions.delete_manifest(txn, name, digest, now))
            )
        else:
            await self.metadata.transact(
                lambda txn: _retaining(txn, name, versions.delete_tag(txn, name, reference, now))
            )

    # Listings

    async def tags(self, name: str, limit: int | None, last: str | None) -> list[str]:
        validate_name(name)
        return await self.metadata.transact(lambda txn: versions.tags(txn, name, limit, last))

    async def catalog(self, limit: int | None, last: str | None) -> list[str]:
        return await self.metadata.transact(lambda txn: versions.repositories(txn, limit, last))

    async def referrers(
        self, name: str, digest: str, artifact_type: str | None
    ) -> list[Descriptor]:
        validate_name(name)
        subject = Digest.parse(digest)
        return await self.metadata.transact(
            lambda txn: versions.referrers(txn, name, subject, artifact_type)
        )

    async def versions(self, name: str) -> list[versions.Version]:
        validate_name(name)
        return await self.metadata.transact(lambda txn: versions.versions(txn, name))

    async def version_content(self, name: str, number: int | None = None) -> dict:
        validate_name(name)
        return await self.metadata.transact(
            lambda txn: versions.version_content(txn, name, number)
        )


async def _retaining(txn: ITransaction, name: str, change: Awaitable[T]) -> T:
    """Run `change`, which may make a version, then prune to the repository's retain_versions."""
    result = await change
    await history.retain_through(txn, name)
    return result


async def _promoting(
    txn: ITransaction, blobs: IBlobStore, name: str, manifest: Manifest, tag: str | None,
    now: float,
) -> versions.Promotion:
    """`versions.promote`, then the pruning to retain_versions when it made a version.

    Without a new version or without a limit there is nothing to prune: no statement.
    """
    promotion = await versions.promote(txn, blobs, name, manifest, tag, now)
    if promotion.created and promotion.retain_versions is not None:
        await history.retain_through(txn, name)
    return promotion


def upload_location(name: str, uuid: str) -> str:
    return f"/v2/{name}/blobs/uploads/{uuid}"


def _validate_reference(reference: str, pushing: bool) -> None:
    """Refuse a manifest reference that is neither a tag nor a digest we can verify.

    A read or a delete of one is MANIFEST_UNKNOWN, the spec's answer for a
    manifest that is not there (and this one cannot be); a push under one is
    a bad request: DIGEST_INVALID for a digest, MANIFEST_INVALID for a tag.
    """
    try:
        if is_digest(reference):
            Digest.parse(reference)
        else:
            validate_tag(reference)
    except RegistryError as e:
        if not pushing:
            raise RegistryError(
                MANIFEST_UNKNOWN, f"no manifest can be named {reference[:80]!r}: {e.message}",
                {"reference": reference[:300]},
            ) from None
        if is_digest(reference):
            raise
        raise RegistryError(MANIFEST_INVALID, f"tag invalid: {e.message}", e.detail) from None


def check_content_range(start: int, end: int, length: int | None) -> None:
    """A chunk's Content-Range must be ordered and agree with its Content-Length."""
    if end < start:
        raise RegistryError(
            UPLOAD_RANGE_INVALID, f"Content-Range end {end} is before its start {start}"
        )
    if length is not None and length != end - start + 1:
        raise RegistryError(
            SIZE_INVALID,
            f"Content-Range {start}-{end} says {end - start + 1} bytes, "
            f"Content-Length says {length}",
        )
