"""The domain's errors, typed: each says with its fields what went wrong, nothing of HTTP.

Each is a `RegistryError` of one `ErrorCode` (the `code` of its class), so
that everything catching RegistryError catches it too; its message and
detail follow from its fields. How each code goes over the wire is the
table in ocireg.api.errors, which also builds the headers an error implies
(where an upload ends, when to try again).

Longer than 400 lines on purpose: every error the domain raises is here, in
one place for the HTTP layer's table and for a reader, each a few fields
and the message and detail they make; split among their raisers, the
HTTP layer would import them from a dozen modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar

import attrs

from ocireg.digest import Digest
from ocireg.errors import (
    BLOB_UNKNOWN,
    BLOB_UPLOAD_INVALID,
    BLOB_UPLOAD_UNKNOWN,
    CONTENT_UNKNOWN,
    DELETE_REFUSED,
    DENIED,
    DIGEST_INVALID,
    DISTRIBUTION_UNKNOWN,
    INVALID,
    MANIFEST_BLOB_UNKNOWN,
    MANIFEST_INVALID,
    MANIFEST_UNKNOWN,
    NAME_UNKNOWN,
    SIZE_INVALID,
    STATE_CONFLICT,
    TOO_MANY_REQUESTS,
    UPLOAD_RANGE_INVALID,
    VERSION_UNKNOWN,
    ErrorCode,
    RegistryError,
)

#: Seconds a client over its upload sessions is told to wait: sessions end as
#: pushes finish, so soon, unless the client left them open to expire.
UPLOADS_RETRY_AFTER = 60


@attrs.frozen
class DomainError(RegistryError):
    """A typed error of the domain; subclasses set `code` and say `message` and `detail`."""

    code: ClassVar[ErrorCode]
    #: A typed error adds no headers of its own: the HTTP layer derives them.
    headers: ClassVar[Mapping[str, str]] = MappingProxyType({})

    @property
    def message(self) -> str:
        raise NotImplementedError

    @property
    def detail(self) -> object:
        return None

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


# Repositories and distributions


@attrs.frozen
class NameUnknown(DomainError):
    code = NAME_UNKNOWN
    name: str

    @property
    def message(self) -> str:
        return f"repository {self.name!r} is not known"

    @property
    def detail(self) -> object:
        return {"name": self.name}


@attrs.frozen
class DistributionPinned(DomainError):
    """A push or delete through a base path that serves a pinned version."""

    code = DENIED
    base_path: str
    repository: str
    version: int

    @property
    def message(self) -> str:
        return (
            f"{self.base_path!r} serves version {self.version} of repository "
            f"{self.repository!r}, pinned: it takes no pushes or deletes; unpin the "
            "distribution or push to another name"
        )

    @property
    def detail(self) -> object:
        return {"name": self.base_path, "repository": self.repository, "version": self.version}


@attrs.frozen
class RepositoryExists(DomainError):
    code = STATE_CONFLICT
    name: str

    @property
    def message(self) -> str:
        return f"repository {self.name!r} already exists"

    @property
    def detail(self) -> object:
        return {"field": "name", "name": self.name}


@attrs.frozen
class DistributionUnknown(DomainError):
    code = DISTRIBUTION_UNKNOWN
    base_path: str

    @property
    def message(self) -> str:
        return f"there is no distribution {self.base_path!r}"

    @property
    def detail(self) -> object:
        return {"base_path": self.base_path}


@attrs.frozen
class DistributionExists(DomainError):
    code = STATE_CONFLICT
    base_path: str

    @property
    def message(self) -> str:
        return f"distribution {self.base_path!r} already exists"

    @property
    def detail(self) -> object:
        return {"field": "base_path", "base_path": self.base_path}


# Versions


@attrs.frozen
class VersionUnknown(DomainError):
    code = VERSION_UNKNOWN
    repository: str
    version: int

    @property
    def message(self) -> str:
        return f"repository {self.repository!r} has no version {self.version}"

    @property
    def detail(self) -> object:
        return {"repository": self.repository, "version": self.version}


@attrs.frozen
class VersionUndeletable(DomainError):
    """Version 0 (the empty start) and the latest version stay."""

    code = STATE_CONFLICT
    repository: str
    version: int

    @property
    def message(self) -> str:
        which = "version 0, the empty start," if self.version == 0 else "the latest version"
        return f"{which} of repository {self.repository!r} cannot be deleted"

    @property
    def detail(self) -> object:
        return {"repository": self.repository, "version": self.version}


@attrs.frozen
class VersionPinned(DomainError):
    """A version that distributions serve, pinned, cannot be deleted."""

    code = STATE_CONFLICT
    repository: str
    version: int
    distributions: tuple[str, ...]

    @property
    def message(self) -> str:
        return (
            f"version {self.version} of repository {self.repository!r} is pinned by "
            f"distribution {self.distributions[0]!r}: unpin it first"
        )

    @property
    def detail(self) -> object:
        return {"repository": self.repository, "version": self.version,
                "distributions": list(self.distributions)}


@attrs.frozen
class InvalidField(DomainError):
    """A management input the domain cannot act on, naming its field."""

    code = INVALID
    field: str
    reason: str

    @property
    def message(self) -> str:
        return self.reason

    @property
    def detail(self) -> object:
        return {"field": self.field}


@attrs.frozen
class ContentUnknown(DomainError):
    """Content a change adds is not in the version it is taken from (`where`)."""

    code = CONTENT_UNKNOWN
    #: "tag", "manifest" or "blob".
    kind: str
    #: The tag, or the digests missing; the first is named in the message.
    missing: tuple[str, ...]
    where: str
    #: The input field that asked for it, if one did.
    field: str | None = None

    @property
    def message(self) -> str:
        shown = repr(self.missing[0]) if self.kind == "tag" else self.missing[0]
        return f"{self.kind} {shown} is not in {self.where}"

    @property
    def detail(self) -> object:
        detail: dict[str, object] = {} if self.field is None else {"field": self.field}
        if self.kind == "tag":
            detail["tag"] = self.missing[0]
        else:
            detail[f"{self.kind}s"] = list(self.missing[:20])
        return detail


@attrs.frozen
class RemovedContentUnknown(DomainError):
    """A tag or manifest a change removes is not in the repository's latest version."""

    code = CONTENT_UNKNOWN
    #: "tag" or "manifest".
    kind: str
    #: The tag, or the manifest's digest.
    key: str
    repository: str
    field: str

    @property
    def message(self) -> str:
        shown = repr(self.key) if self.kind == "tag" else self.key
        return f"{self.kind} {shown} is not in repository {self.repository!r}"

    @property
    def detail(self) -> object:
        return {"field": self.field, "tag" if self.kind == "tag" else "digest": self.key}


@attrs.frozen
class DanglingTag(DomainError):
    """A version made by hand would hold a tag whose manifest it does not hold."""

    code = STATE_CONFLICT
    manifests: tuple[str, ...]

    @property
    def message(self) -> str:
        return f"a tag would point at manifest {self.manifests[0]}, which is not there"

    @property
    def detail(self) -> object:
        return {"manifests": list(self.manifests[:20])}


@attrs.frozen
class DanglingReference(DomainError):
    """A version made by hand would hold a manifest without what it references."""

    code = STATE_CONFLICT
    manifest: str
    kind: str
    digest: str

    @property
    def message(self) -> str:
        return f"manifest {self.manifest} needs {self.kind} {self.digest}, which would not be there"

    @property
    def detail(self) -> object:
        return {"manifest": self.manifest, self.kind: self.digest}


@attrs.frozen
class BytesGoneFromVersion(DomainError):
    """A version made by hand would add blobs whose bytes are gone."""

    code = STATE_CONFLICT
    repository: str
    blobs: tuple[str, ...]

    @property
    def message(self) -> str:
        return (
            f"the bytes of blob {self.blobs[0]} are gone: push it to {self.repository!r} "
            "again first"
        )

    @property
    def detail(self) -> object:
        return {"blobs": list(self.blobs[:20])}


# Blobs, manifests and tags of the registry API


@attrs.frozen
class BlobUnknown(DomainError):
    code = BLOB_UNKNOWN
    digest: str
    repository: str

    @property
    def message(self) -> str:
        return f"blob {self.digest} is not in repository {self.repository!r}"

    @property
    def detail(self) -> object:
        return {"digest": self.digest}


@attrs.frozen
class BlobBytesGone(DomainError):
    """A blob is recorded, but its bytes are missing from the blob store."""

    code = BLOB_UNKNOWN
    digest: str

    @property
    def message(self) -> str:
        return f"the bytes of blob {self.digest} are missing"

    @property
    def detail(self) -> object:
        return {"digest": self.digest}


@attrs.frozen
class ManifestUnknown(DomainError):
    """A manifest reference (tag or digest) that a name does not serve."""

    code = MANIFEST_UNKNOWN
    name: str
    reference: str

    @property
    def message(self) -> str:
        return f"manifest {self.reference!r} is not in repository {self.name!r}"

    @property
    def detail(self) -> object:
        return {"name": self.name, "reference": self.reference}


@attrs.frozen
class NotInRepository(DomainError):
    """A delete of a tag or a manifest that the repository does not hold."""

    code = MANIFEST_UNKNOWN
    #: "tag" or "manifest".
    kind: str
    #: The tag, or the manifest's digest.
    key: str
    repository: str

    @property
    def message(self) -> str:
        shown = repr(self.key) if self.kind == "tag" else self.key
        return f"{self.kind} {shown} is not in repository {self.repository!r}"

    @property
    def detail(self) -> object:
        return {"tag" if self.kind == "tag" else "digest": self.key}


@attrs.frozen
class DeleteRefused(DomainError):
    """A delete that would leave `users` (manifests, or indexes) pointing at nothing."""

    code = DELETE_REFUSED
    #: "blob" or "manifest".
    kind: str
    digest: str
    repository: str
    users: tuple[str, ...]

    @property
    def message(self) -> str:
        user = "manifest" if self.kind == "blob" else "index"
        return (
            f"{self.kind} {self.digest} is part of {user} {self.users[0]} in repository "
            f"{self.repository!r}: delete the {user} first"
        )

    @property
    def detail(self) -> object:
        return {"digest": self.digest, "manifests": list(self.users[:10])}


@attrs.frozen
class ReferenceUnknown(DomainError):
    """A read or delete of a manifest by a reference that can name no manifest."""

    code = MANIFEST_UNKNOWN
    reference: str
    reason: str

    @property
    def message(self) -> str:
        return f"no manifest can be named {self.reference[:80]!r}: {self.reason}"

    @property
    def detail(self) -> object:
        return {"reference": self.reference[:300]}


@attrs.frozen
class TagInvalid(DomainError):
    """A push under a tag that is no valid tag; `why` is the tag check's detail."""

    code = MANIFEST_INVALID
    reason: str
    why: object = None

    @property
    def message(self) -> str:
        return f"tag invalid: {self.reason}"

    @property
    def detail(self) -> object:
        return self.why


@attrs.frozen
class DigestMismatch(DomainError):
    """Pushed bytes whose digest is not the one the client named."""

    code = DIGEST_INVALID
    #: What was pushed: "upload" or "manifest".
    what: str
    expected: str
    actual: str

    @property
    def message(self) -> str:
        return f"the {self.what}'s digest is {self.actual}, not {self.expected}"

    @property
    def detail(self) -> object:
        return {"expected": self.expected, "actual": self.actual}


# Promotion


@attrs.frozen
class ClosureIncomplete(DomainError):
    """A tag write whose manifest needs child manifests or blobs the repository lacks."""

    code = MANIFEST_BLOB_UNKNOWN
    #: "manifest" or "blob".
    kind: str
    missing: tuple[str, ...]
    repository: str

    @property
    def message(self) -> str:
        again = "push it first" if self.kind == "manifest" else "push it again"
        return f"{self.kind} {self.missing[0]} is not in repository {self.repository!r}: {again}"

    @property
    def detail(self) -> object:
        return {f"{self.kind}s": list(self.missing[:20])}


@attrs.frozen
class BlobBytesMissing(DomainError):
    """A tag write needs blobs whose metadata exists but whose bytes are gone."""

    code = MANIFEST_BLOB_UNKNOWN
    digests: Sequence[Digest]

    @property
    def message(self) -> str:
        return f"the bytes of blob {self.digests[0]} are gone: push it again"

    @property
    def detail(self) -> object:
        return {"blobs": [str(d) for d in self.digests[:20]]}


@attrs.frozen
class DeclaredSizeWrong(DomainError):
    """A manifest declares a descriptor's size other than the stored one."""

    code = SIZE_INVALID
    digest: str
    manifest: str
    declared: int
    size: int

    @property
    def message(self) -> str:
        return (
            f"manifest {self.manifest} declares {self.digest} as {self.declared} bytes, "
            f"but it holds {self.size}"
        )

    @property
    def detail(self) -> object:
        return {"digest": self.digest, "manifest": self.manifest, "declared": self.declared,
                "size": self.size}


# Uploads


@attrs.frozen
class UploadUnknown(DomainError):
    """No upload `uuid` in progress (in `repository`, when given: else it has no bytes)."""

    code = BLOB_UPLOAD_UNKNOWN
    uuid: str
    repository: str | None = None

    @property
    def message(self) -> str:
        if self.repository is None:
            return f"upload {self.uuid!r} has no data"
        return f"upload {self.uuid!r} is not in progress in repository {self.repository!r}"

    @property
    def detail(self) -> object:
        return {"uuid": self.uuid}


@attrs.frozen
class UploadBusy(DomainError):
    """An upload a request is writing to cannot be cancelled."""

    code = BLOB_UPLOAD_INVALID
    uuid: str

    @property
    def message(self) -> str:
        return "a request is writing to this upload"

    @property
    def detail(self) -> object:
        return {"uuid": self.uuid}


@attrs.frozen
class UploadRangeInvalid(DomainError):
    """A chunk that does not start where upload `uuid` of `name` ends (`size` bytes).

    `start` is where the chunk starts; None when another request is writing
    to the upload. The client is told where the upload ends, to resume there.
    """

    code = UPLOAD_RANGE_INVALID
    name: str
    uuid: str
    size: int
    start: int | None = None

    @property
    def message(self) -> str:
        if self.start is None:
            return "another request is writing to this upload"
        return f"chunk starts at {self.start}, but the upload holds {self.size} bytes"

    @property
    def detail(self) -> object:
        if self.start is None:
            return {"uuid": self.uuid}
        return {"uuid": self.uuid, "size": self.size}


@attrs.frozen
class TooManyUploads(DomainError):
    """A client holds `limit` upload sessions open already."""

    code = TOO_MANY_REQUESTS
    limit: int
    #: Seconds the client is told to wait.
    retry_after: int = UPLOADS_RETRY_AFTER

    @property
    def message(self) -> str:
        return (
            f"{self.limit} upload sessions are open already: finish or cancel some before "
            "opening more"
        )

    @property
    def detail(self) -> object:
        return {"limit": self.limit}
