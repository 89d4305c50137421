"""What can go wrong, as the code below the HTTP layer says it: a code, a message, a detail.

How each code goes over the wire (the code clients read, the status) is the
HTTP layer's business: the table in ocireg.api.errors.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class ErrorCode:
    """One kind of error, named for what it is, with what to say when the raiser says no more."""

    name: str
    message: str


# The registry API's codes; ocireg.api.errors sends most under their own
# name, and says why for those it does not.

BLOB_UNKNOWN = ErrorCode("BLOB_UNKNOWN", "blob unknown to registry")
BLOB_UPLOAD_INVALID = ErrorCode("BLOB_UPLOAD_INVALID", "blob upload invalid")
BLOB_UPLOAD_UNKNOWN = ErrorCode("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
DIGEST_INVALID = ErrorCode("DIGEST_INVALID", "provided digest did not match uploaded content")
MANIFEST_BLOB_UNKNOWN = ErrorCode(
    "MANIFEST_BLOB_UNKNOWN", "manifest references a manifest or blob unknown to registry"
)
MANIFEST_INVALID = ErrorCode("MANIFEST_INVALID", "manifest invalid")
MANIFEST_UNKNOWN = ErrorCode("MANIFEST_UNKNOWN", "manifest unknown to registry")
NAME_INVALID = ErrorCode("NAME_INVALID", "invalid repository name")
NAME_UNKNOWN = ErrorCode("NAME_UNKNOWN", "repository name not known to registry")
SIZE_INVALID = ErrorCode("SIZE_INVALID", "provided length did not match content length")
UNAUTHORIZED = ErrorCode("UNAUTHORIZED", "authentication required")
DENIED = ErrorCode("DENIED", "requested access to the resource is denied")
TOO_MANY_REQUESTS = ErrorCode("TOO_MANY_REQUESTS", "too many requests")
#: The spec's "invalid set of parameters": a query parameter or request
#: form the registry cannot act on (a bad `n`, a bad token request).
UNSUPPORTED = ErrorCode("UNSUPPORTED", "the operation is unsupported")
#: A body larger than the registry keeps (a manifest past its limit).
BODY_TOO_LARGE = ErrorCode("BODY_TOO_LARGE", "request body too large")
#: A chunk that does not start where the upload ends.
UPLOAD_RANGE_INVALID = ErrorCode("UPLOAD_RANGE_INVALID", "invalid content range")
#: A delete the registry refuses because it would leave a version broken (a
#: blob a tagged manifest needs, a child of a tagged index).
DELETE_REFUSED = ErrorCode("DELETE_REFUSED", "the delete would leave a dangling reference")
#: The metadata store does not answer (PostgreSQL down or past its timeout).
UNAVAILABLE = ErrorCode("UNAVAILABLE", "service unavailable; try again shortly")
#: The data directory's file system has no room left above the reserve.
STORAGE_FULL = ErrorCode("STORAGE_FULL", "the registry is out of storage space")

# Codes of the management API (/api/v1/) only. A bad input's detail names
# the offending field as {"field": …}.
INVALID = ErrorCode("INVALID", "invalid request")
VERSION_UNKNOWN = ErrorCode("VERSION_UNKNOWN", "repository version unknown")
DISTRIBUTION_UNKNOWN = ErrorCode("DISTRIBUTION_UNKNOWN", "distribution unknown")
CONTENT_UNKNOWN = ErrorCode("CONTENT_UNKNOWN", "content unknown to the repository version")
STATE_CONFLICT = ErrorCode("STATE_CONFLICT", "the request conflicts with the current state")
TAG_INVALID = ErrorCode("TAG_INVALID", "invalid tag")


class RegistryError(Exception):
    """An error the client is told about: its code, message and detail.

    The HTTP layer decides how it is sent (ocireg.api.errors). The domain
    raises typed subclasses (ocireg.domain.errors) whose fields say what
    went wrong; this untyped form is raised by the HTTP layer itself and by
    the layers whose errors are not typed yet. `headers` are response
    headers an HTTP-layer raiser adds (a Retry-After): below ocireg.api
    nothing sets them, the HTTP layer derives them from a typed error's
    fields instead.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        detail: object = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.headers = headers or {}
        super().__init__(f"{code.name}: {self.message}")
