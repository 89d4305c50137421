"""The registry API's error codes, and the OCI error JSON they render to."""

from __future__ import annotations

import json

import attrs


@attrs.frozen
class ErrorCode:
    """One code of the distribution spec, with the status it is sent with."""

    name: str
    status: int
    message: str


# The registry API (/v2/) answers with the codes of the distribution spec's
# table and no others: clients act on them, and treat any other code as an
# unknown error. Where the spec names a status other than the code's usual
# one (416 for a range, 405 for a refused delete), the code is the table's
# and only the status differs.

BLOB_UNKNOWN = ErrorCode("BLOB_UNKNOWN", 404, "blob unknown to registry")
BLOB_UPLOAD_INVALID = ErrorCode("BLOB_UPLOAD_INVALID", 400, "blob upload invalid")
BLOB_UPLOAD_UNKNOWN = ErrorCode("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry")
DIGEST_INVALID = ErrorCode("DIGEST_INVALID", 400, "provided digest did not match uploaded content")
MANIFEST_BLOB_UNKNOWN = ErrorCode(
    "MANIFEST_BLOB_UNKNOWN", 400, "manifest references a manifest or blob unknown to registry"
)
MANIFEST_INVALID = ErrorCode("MANIFEST_INVALID", 400, "manifest invalid")
MANIFEST_UNKNOWN = ErrorCode("MANIFEST_UNKNOWN", 404, "manifest unknown to registry")
NAME_INVALID = ErrorCode("NAME_INVALID", 400, "invalid repository name")
NAME_UNKNOWN = ErrorCode("NAME_UNKNOWN", 404, "repository name not known to registry")
SIZE_INVALID = ErrorCode("SIZE_INVALID", 400, "provided length did not match content length")
UNAUTHORIZED = ErrorCode("UNAUTHORIZED", 401, "authentication required")
DENIED = ErrorCode("DENIED", 403, "requested access to the resource is denied")
TOO_MANY_REQUESTS = ErrorCode("TOOMANYREQUESTS", 429, "too many requests")
#: The spec's "invalid set of parameters": a query parameter or request
#: form the registry cannot act on (a bad `n`, a bad token request).
UNSUPPORTED = ErrorCode("UNSUPPORTED", 400, "the operation is unsupported")

#: A body larger than the registry keeps (a manifest past its limit).
TOO_LARGE = ErrorCode("SIZE_INVALID", 413, "request body too large")
#: A chunk that does not start where the upload ends: the spec's 416.
UPLOAD_RANGE_INVALID = ErrorCode("BLOB_UPLOAD_INVALID", 416, "invalid content range")
#: A download Range wholly past the blob's end: 416, the range disagreeing
#: with the blob's length.
RANGE_NOT_SATISFIABLE = ErrorCode("SIZE_INVALID", 416, "requested range not satisfiable")
#: A path that names no operation of the API.
NO_SUCH_ENDPOINT = ErrorCode("UNSUPPORTED", 404, "no such endpoint")
METHOD_UNSUPPORTED = ErrorCode("UNSUPPORTED", 405, "the operation is unsupported")
#: A delete the registry refuses because it would leave a version broken (a
#: blob a tagged manifest needs, a child of a tagged index). The spec's answer
#: to a delete a registry does not do is 405 (or 400) with UNSUPPORTED: 405 is
#: in the spec's failure statuses of both delete endpoints and clients know it
#: as "this registry will not delete that"; 409, HTTP's closer word, is in
#: neither, and DENIED would send the client looking for a permission.
CONFLICT = ErrorCode("UNSUPPORTED", 405, "the delete would leave a dangling reference")
#: The metadata store does not answer (PostgreSQL down or past its timeout).
#: The table has no code for a server-side failure. The 503 says it to HTTP
#: clients (docker, podman and skopeo go by the status of a 5xx and read no
#: error body off it); TOOMANYREQUESTS is the one code whose answer is the
#: right one for anyone who does read the body: back off and try again.
UNAVAILABLE = ErrorCode("TOOMANYREQUESTS", 503, "service unavailable; try again shortly")
#: The body of a 500. The table has no code for a failure of the registry's
#: own and a body may carry no other: the list is empty, the status says it,
#: and the log has the cause.
INTERNAL_ERROR: dict[str, list] = {"errors": []}
# The spec's table has no code for a full disk. 507 Insufficient Storage says
# what is wrong even to clients that read no 5xx body (skopeo 1.9 printed
# "received unexpected HTTP status: 507 Insufficient Storage Space"; docker's
# client reads none either), and is not one a client retries at once (a 503
# is, and the disk stays full for the retries). DENIED is the table's code for
# "not accepted, and not your input's fault": registries that enforce storage
# quotas (Harbor, GitLab) answer DENIED.
STORAGE_FULL = ErrorCode("DENIED", 507, "the registry is out of storage space")


class RegistryError(Exception):
    """An error the client is told about, with its code, status and detail.

    Raised anywhere below the HTTP layer; the HTTP layer renders it.
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

    @property
    def status(self) -> int:
        return self.code.status

    def to_json(self) -> bytes:
        error: dict[str, object] = {"code": self.code.name, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return json.dumps({"errors": [error]}).encode()


# Codes of the management API (/api/v1/) only; it renders them as
# {"error": {"code", "message", "field", "detail"}}. A bad input's detail
# names the offending field as {"field": …}.
INVALID = ErrorCode("INVALID", 400, "invalid request")
VERSION_UNKNOWN = ErrorCode("VERSION_UNKNOWN", 404, "repository version unknown")
DISTRIBUTION_UNKNOWN = ErrorCode("DISTRIBUTION_UNKNOWN", 404, "distribution unknown")
CONTENT_UNKNOWN = ErrorCode("CONTENT_UNKNOWN", 404, "content unknown to the repository version")
STATE_CONFLICT = ErrorCode("CONFLICT", 409, "the request conflicts with the current state")
TAG_INVALID = ErrorCode("TAG_INVALID", 400, "invalid tag")
NOT_FOUND = ErrorCode("NOT_FOUND", 404, "no such endpoint")
