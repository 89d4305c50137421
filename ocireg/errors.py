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
TOO_LARGE = ErrorCode("SIZE_INVALID", 413, "request body too large")
RANGE_INVALID = ErrorCode("RANGE_INVALID", 416, "invalid content range")
TAG_INVALID = ErrorCode("TAG_INVALID", 400, "manifest tag did not match URI")
UNAUTHORIZED = ErrorCode("UNAUTHORIZED", 401, "authentication required")
DENIED = ErrorCode("DENIED", 403, "requested access to the resource is denied")
TOO_MANY_REQUESTS = ErrorCode("TOOMANYREQUESTS", 429, "too many requests")
CONFLICT = ErrorCode("DENIED", 409, "the request conflicts with the repository's content")
UNSUPPORTED = ErrorCode("UNSUPPORTED", 415, "the operation is unsupported")
METHOD_UNSUPPORTED = ErrorCode("UNSUPPORTED", 405, "the operation is unsupported")
NOT_FOUND = ErrorCode("NOT_FOUND", 404, "no such endpoint")
UNAVAILABLE = ErrorCode("UNAVAILABLE", 503, "service unavailable")
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
