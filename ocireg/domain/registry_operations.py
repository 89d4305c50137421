"""The registry API's operations over the stores, as the HTTP layer calls them.

Each method validates its input, runs the domain functions (`lookups`,
`staging`, `promotion`, `removal`, `listings`, `history`) in transactions of
the metadata store, and moves bytes through the blob store; upload sessions
are `UploadOperations`'. Every operation that makes a version also prunes
the repository to its `retain_versions`, in the same transaction. Nothing
here knows of HTTP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
from twisted.logger import Logger

from ocireg.cache import ReadCache
from ocireg.digest import Digest, is_digest
from ocireg.domain import folding, history, listings, lookups, removal, repositories, staging
from ocireg.domain.content import forget_blobs
from ocireg.domain.errors import (
    BlobBytesGone,
    BlobBytesMissing,
    BlobUnknown,
    DigestMismatch,
    ReferenceUnknown,
    TagInvalid,
)
from ocireg.domain.promotion import Promotion, promote
from ocireg.domain.upload_operations import UploadOperations
from ocireg.errors import (
    UNAVAILABLE,
    RegistryError,
)
from ocireg.interfaces import ITransaction
from ocireg.manifest import Descriptor, parse_manifest
from ocireg.names import validate_name, validate_tag

_log = Logger()
T = TypeVar("T")


@attrs.frozen
class PushedManifest:
    digest: Digest
    subject: Digest | None


@attrs.define
class RegistryOperations(UploadOperations):
    """Blobs, uploads, manifests and tags of every repository."""

    #: Answers of manifest and blob lookups, dropped whenever `metadata` changes;
    #: None when the store cannot tell this process of every change (see ocireg.cache).
    cache: ReadCache | None = attrs.field(default=None, kw_only=True)

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
                lambda txn: lookups.blob_size(txn, name, parsed), readonly=True
            )
            if size is None:
                raise BlobUnknown(str(parsed), name)
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

    async def _bytes_gone(self, digest: Digest) -> BlobBytesGone:
        """Forget blob `digest`, recorded but without bytes; the BLOB_UNKNOWN to answer.

        A client told 404 uploads it again, which heals the store; while the
        record stayed, HEAD would tell a push to skip the upload.
        """
        _log.error("blob {digest} is recorded but its bytes are missing", digest=str(digest))
        await self._forget_gone([digest])
        return BlobBytesGone(str(digest))

    async def _forget_gone(self, digests: list[Digest]) -> None:
        """Drop the records of `digests` whose bytes are still missing, looked at once more.

        Looked at in the transaction: a blob uploaded again since the first look
        keeps its record.
        """

        async def forget(txn: ITransaction) -> None:
            gone = await self.blobs.missing_blobs(digests)
            if gone:
                await forget_blobs(txn, gone)

        await self.metadata.transact(forget)

    async def delete_blob(self, name: str, digest: str) -> None:
        validate_name(name)
        parsed = Digest.parse(digest)
        now = self._now()
        await self.metadata.transact(
            lambda txn: _then_prune(txn, name, removal.delete_blob(txn, name, parsed, now))
        )

    # Uploads

    # Manifests

    async def get_manifest(self, name: str, reference: str) -> lookups.StoredManifest:
        async def read() -> lookups.StoredManifest:
            validate_name(name)
            _validate_reference(reference, pushing=False)
            # One SELECT, read-only: the store may skip BEGIN and COMMIT.
            return await self.metadata.transact(
                lambda txn: lookups.get_manifest(txn, name, reference), readonly=True
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
                raise DigestMismatch("manifest", str(wanted), str(actual))
            if wanted.algorithm != "sha256":
                manifest = attrs.evolve(manifest, digest=wanted)
        else:
            tag = reference
        now = self._now()
        if tag is None and manifest.subject is None:
            await self.metadata.transact(
                lambda txn: staging.stage_manifest(txn, name, manifest, now)
            )
        else:

            async def promote_and_prune(txn: ITransaction) -> Promotion:
                repository, keep = await repositories.push_target(txn, name, now)
                promotion = await promote(txn, self.blobs, repository, manifest, tag, now)
                # Without a new version or without a limit there is nothing to prune:
                # no statement.
                if promotion.created and keep is not None:
                    await folding.prune_by_base_path(txn, name)
                return promotion

            try:
                await self.metadata.transact(promote_and_prune)
            except BlobBytesMissing as e:
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
                lambda txn: _then_prune(txn, name, removal.delete_manifest(txn, name, digest, now))
            )
        else:
            await self.metadata.transact(
                lambda txn: _then_prune(txn, name, removal.delete_tag(txn, name, reference, now))
            )

    # Listings

    async def tags(self, name: str, limit: int | None, last: str | None) -> list[str]:
        validate_name(name)
        return await self.metadata.transact(lambda txn: listings.tags(txn, name, limit, last))

    async def catalog(self, limit: int | None, last: str | None) -> list[str]:
        return await self.metadata.transact(lambda txn: listings.catalog(txn, limit, last))

    async def referrers(
        self, name: str, digest: str, artifact_type: str | None
    ) -> list[Descriptor]:
        validate_name(name)
        subject = Digest.parse(digest)
        return await self.metadata.transact(
            lambda txn: listings.referrers(txn, name, subject, artifact_type)
        )

    async def versions(self, name: str) -> list[history.Version]:
        validate_name(name)
        return await self.metadata.transact(lambda txn: history.versions(txn, name))

    async def version_content(self, name: str, number: int | None = None) -> dict:
        validate_name(name)
        return await self.metadata.transact(
            lambda txn: history.version_content(txn, name, number)
        )




async def _then_prune(txn: ITransaction, base_path: str, change: Awaitable[T]) -> T:
    """Run `change`, which may make a version, then prune to the repository's retain_versions."""
    result = await change
    await folding.prune_by_base_path(txn, base_path)
    return result


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
            raise ReferenceUnknown(reference, e.message) from None
        if is_digest(reference):
            raise
        raise TagInvalid(e.message, e.detail) from None


