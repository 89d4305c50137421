"""The seams between ocireg's layers."""

from __future__ import annotations

from zope.interface import Attribute, Interface


class ITransaction(Interface):
    """One open database transaction, as the domain code sees it.

    SQL uses `?` placeholders; each backend adapts them to its driver.

    What an interaction (the function given to `IMetadataStore.transact`)
    may await: this transaction's own `execute`, and `IBlobStore.missing_blobs`
    (a tag write checks that its closure's bytes exist). Nothing else.

    Why: on PostgreSQL an interaction runs on the reactor thread, but on
    SQLite the whole interaction runs on the database thread (one thread hop
    per transaction), where every `execute` answers at once. Anything else
    it awaits that has not fired yet makes that thread block until the
    reactor fires it (`ocireg.db.sqlite`): every other transaction waits
    meanwhile, and one that waits for another transaction cannot fire until
    the store gives up on it (after minutes). So the interaction's code must
    also touch nothing that belongs to the reactor thread (no `callLater`,
    no Deferred another party fires), and `missing_blobs` must answer at
    once when called off the reactor thread. The SQLite store tolerates an
    awaited Deferred fired elsewhere, at that cost; PostgreSQL would not
    notice one: the rule is what keeps domain code right on both.
    """

    for_update = Attribute(
        "The clause that locks the selected rows until commit: ' FOR UPDATE' "
        "where rows can be locked, '' where the backend serialises transactions."
    )

    def execute(sql: str, params: tuple = ()) -> object:
        """Run one statement; await (once) its rows as a list of tuples.

        A statement that returns no rows gives []. What is returned is a
        Deferred on SQLite and a coroutine on PostgreSQL: await it, add no
        callbacks.
        """


class UploadInUse(Exception):
    """Another writer, maybe in another process, holds this upload open."""


class IMetadataStore(Interface):
    """Where blobs', manifests', repositories' and uploads' metadata live.

    Besides transactions, a store tells whoever keeps answers read from it
    (the read cache, `ocireg.cache`) when those may have gone stale:
    `on_change`, `on_listening_lost` and `catch_up`.
    """

    def transact(interaction, readonly=False) -> object:
        """Run `await interaction(txn)` in one transaction.

        Returns a Deferred of its result. The transaction commits when the
        interaction returns and rolls back when it raises.

        `readonly` promises that the interaction only reads (no writes, no
        locks): a store may then spare the transaction's own overhead, and an
        interaction of one statement still reads one consistent snapshot.
        """

    def on_change(callback) -> None:
        """Call `callback()` after each committed transaction that changed rows.

        It runs on the reactor thread, before the changing transaction's
        caller resumes. A store shared by several processes also calls it for
        the other processes' changes as it hears of them, and once when it
        hears of them again after it may have missed some (see `catch_up`).
        """

    def on_listening_lost(callback) -> None:
        """Call `callback()` when the store stops hearing of other processes' changes.

        A store no other process writes to never stops hearing of them and
        never calls it.
        """

    def catch_up() -> bool:
        """Take in the changes already heard of; whether none can have gone unheard.

        Never waits. False while the store cannot hear of every change (the
        connection that hears other processes' changes is down, or the store
        is closed): an answer read before may be stale by now.
        """

    def close() -> object:
        """Close the store; something to await once (a coroutine) that ends when it is closed.

        Transactions already asked for run to their end first or fail; one
        asked for afterwards fails.
        """


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
        """A Deferred of those of `digests` whose bytes are not stored.

        The one blob store call an interaction may await (see
        `ITransaction`): called off the reactor thread, it must do its work
        on the calling thread and return a Deferred that has already fired.
        """

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

    `drained` answers a Deferred (the body path adds callbacks to it);
    `digest`, `truncate` and `close` answer something to await once, a
    Deferred or a coroutine.
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
        """The digest of every byte written so far, once what is queued is written."""

    def truncate(size: int) -> object:
        """Cut the upload back to its first `size` bytes, once what is queued is written."""

    def close() -> object:
        """Write what is queued, then close the file, letting another writer open it.

        It raises a failed write's error, and closes the file all the same.
        """
