"""The seams between ocireg's layers."""

from __future__ import annotations

from zope.interface import Attribute, Interface


class ITransaction(Interface):
    """One open database transaction, as the domain code sees it.

    SQL uses `?` placeholders; each backend adapts them to its driver.
    """

    for_update = Attribute(
        "The clause that locks the selected rows until commit: ' FOR UPDATE' "
        "where rows can be locked, '' where the backend serialises transactions."
    )

    def execute(sql: str, params: tuple = ()) -> object:
        """Run one statement; a Deferred firing with its rows as a list of tuples."""


class UploadInUse(Exception):
    """Another writer, maybe in another process, holds this upload open."""


class IMetadataStore(Interface):
    """Where blobs', manifests', repositories' and uploads' metadata live."""

    def transact(interaction, readonly=False) -> object:
        """Run `await interaction(txn)` in one transaction.

        Returns a Deferred of its result. The transaction commits when the
        interaction returns and rolls back when it raises.

        `readonly` promises that the interaction only reads (no writes, no
        locks): a store may then spare the transaction's own overhead, and an
        interaction of one statement still reads one consistent snapshot.
        """

    def close() -> object:
        """Close the store; a Deferred that fires when it is closed."""


class IBlobStore(Interface):
    """Where blob bytes and in-progress uploads live.

    Every method that touches the disk returns a Deferred and does its work
    off the reactor thread.
    """

    def create_upload(uuid: str) -> object:
        """Create an empty upload file."""

    def open_upload(uuid: str) -> object:
        """A Deferred of an `IUploadFile` to append to, or None if there is no such upload.

        It fails with `UploadInUse` while another writer holds the upload.
        """

    def upload_size(uuid: str) -> object:
        """A Deferred of the number of bytes an upload holds, or None."""

    def commit_upload(uuid: str, digest: object) -> object:
        """Make an upload's bytes durable and the blob `digest`'s bytes.

        A Deferred of True when they became the blob's bytes (the upload's are
        gone), False when the blob was stored already (the upload's stay, for
        `delete_upload` once the blob's metadata is committed).
        """

    def restore_upload(uuid: str, digest: object) -> object:
        """Undo a `commit_upload` that was True: the bytes are the upload's again."""

    def delete_upload(uuid: str) -> object:
        """Remove an upload's bytes, if any."""

    def delete_upload_older_than(uuid: str, before: float) -> object:
        """Remove an upload's bytes unless written at or after `before` or being written.

        A Deferred of whether they are gone (removed, or there were none).
        """

    def missing_blobs(digests: object) -> object:
        """A Deferred of those of `digests` whose bytes are not stored."""

    def blob_size(digest: object) -> object:
        """A Deferred of the size of a stored blob, or None when it is not stored."""

    def open_blob(digest: object) -> object:
        """A Deferred of a binary file object reading the blob, or None."""

    def delete_blob(digest: object) -> object:
        """Remove a blob's bytes, if any."""

    def delete_blob_older_than(digest: object, before: float) -> object:
        """Remove a blob's bytes if they were stored before `before`; a Deferred of whether it did.

        A blob stored again since (a new upload of the same digest) is kept.
        """

    def blob_groups() -> object:
        """A Deferred of the groups blobs are stored in, to list them a group at a time."""

    def stored_blobs(group: str) -> object:
        """A Deferred of (digest, size, stored-at time) of every blob in `group`."""

    def stored_uploads() -> object:
        """A Deferred of (uuid, size, last-written time) of every upload's bytes."""

    def verify_blob(digest: object, size: int) -> object:
        """A Deferred of what is wrong with a stored blob ('missing', 'size', 'digest'), or None."""

    def quarantine_blob(digest: object) -> object:
        """Move a blob's bytes aside, where nothing serves them; a Deferred."""


class IUploadFile(Interface):
    """An upload's bytes, open for appending, with the running digest of them.

    Appends are queued and written in order off the reactor thread, so the
    caller can stop reading from the network while `queued` is high.
    """

    size = Attribute("Bytes appended so far, including those still queued.")
    queued = Attribute("Bytes appended but not written yet.")

    def append(data: bytes) -> None:
        """Queue `data` to be hashed and written after what came before."""

    def drained(threshold: int = 0) -> object:
        """A Deferred that fires when at most `threshold` bytes are queued.

        It fails with the write's error if a write failed.
        """

    def digest(algorithm: str) -> object:
        """A Deferred of the digest of every byte written so far."""

    def truncate(size: int) -> object:
        """Cut the upload back to its first `size` bytes; a Deferred."""

    def close() -> object:
        """Write what is queued, then close the file; a Deferred."""
