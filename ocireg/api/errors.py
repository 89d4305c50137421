"""How errors go over the wire: one table of codes and statuses, one set of handlers.

`WIRE` gives each ErrorCode the code clients read and the status it is sent
with; `error_headers` the headers a typed error's fields imply (an upload's
Location and Range, a Retry-After). The registry API (`/v2/`) and the token
endpoint answer in the distribution spec's error JSON (`oci_error`), the
management API as `{"error": {...}}` (`management_error`).
`install_error_handlers` gives a Klein app its format, and with it the same
answer to a path no route takes, a method the path does not take, and a
failure nobody expected.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
from klein import Klein
from klein.interfaces import IKleinRequest
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ocireg.api.render import json_response
from ocireg.api.uploadheaders import upload_location, upload_range
from ocireg.domain.errors import TooManyUploads, UploadRangeInvalid
from ocireg.errors import (
    BLOB_UNKNOWN,
    BLOB_UPLOAD_INVALID,
    BLOB_UPLOAD_UNKNOWN,
    BODY_TOO_LARGE,
    CONTENT_UNKNOWN,
    DELETE_REFUSED,
    DENIED,
    DIGEST_INVALID,
    DISTRIBUTION_UNKNOWN,
    INVALID,
    MANIFEST_BLOB_UNKNOWN,
    MANIFEST_INVALID,
    MANIFEST_UNKNOWN,
    NAME_INVALID,
    NAME_UNKNOWN,
    SIZE_INVALID,
    STATE_CONFLICT,
    STORAGE_FULL,
    TAG_INVALID,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    UNAVAILABLE,
    UNSUPPORTED,
    UPLOAD_RANGE_INVALID,
    VERSION_UNKNOWN,
    ErrorCode,
    RegistryError,
)

_log = Logger()

# Errors only the HTTP layer raises.

#: A download Range wholly past the blob's end.
RANGE_NOT_SATISFIABLE = ErrorCode("RANGE_NOT_SATISFIABLE", "requested range not satisfiable")
#: A path that names no operation of the registry API or the token endpoint.
NO_SUCH_ENDPOINT = ErrorCode("NO_SUCH_ENDPOINT", "no such endpoint")
#: A path that names no operation of the management API.
NOT_FOUND = ErrorCode("NOT_FOUND", "no such endpoint")
METHOD_UNSUPPORTED = ErrorCode("METHOD_UNSUPPORTED", "the operation is unsupported")
#: A token request that cannot be answered (unknown service, malformed scope or form).
TOKEN_REQUEST_INVALID = ErrorCode("TOKEN_REQUEST_INVALID", "invalid token request")
#: A failure of the registry's own: the log has the cause, the client only the status.
INTERNAL = ErrorCode("INTERNAL", "internal error")


@attrs.frozen
class WireForm:
    """How a code is sent: the code clients read, and the HTTP status."""

    code: str
    status: int


# The registry API (/v2/) answers with the codes of the distribution spec's
# table and no others: clients act on them, and treat any other code as an
# unknown error. Where the spec names a status other than the code's usual
# one (416 for a range, 405 for a refused delete), the code is the table's
# and only the status differs.
WIRE: dict[ErrorCode, WireForm] = {
    BLOB_UNKNOWN: WireForm("BLOB_UNKNOWN", 404),
    BLOB_UPLOAD_INVALID: WireForm("BLOB_UPLOAD_INVALID", 400),
    BLOB_UPLOAD_UNKNOWN: WireForm("BLOB_UPLOAD_UNKNOWN", 404),
    DIGEST_INVALID: WireForm("DIGEST_INVALID", 400),
    MANIFEST_BLOB_UNKNOWN: WireForm("MANIFEST_BLOB_UNKNOWN", 400),
    MANIFEST_INVALID: WireForm("MANIFEST_INVALID", 400),
    MANIFEST_UNKNOWN: WireForm("MANIFEST_UNKNOWN", 404),
    NAME_INVALID: WireForm("NAME_INVALID", 400),
    NAME_UNKNOWN: WireForm("NAME_UNKNOWN", 404),
    SIZE_INVALID: WireForm("SIZE_INVALID", 400),
    UNAUTHORIZED: WireForm("UNAUTHORIZED", 401),
    DENIED: WireForm("DENIED", 403),
    TOO_MANY_REQUESTS: WireForm("TOOMANYREQUESTS", 429),
    UNSUPPORTED: WireForm("UNSUPPORTED", 400),
    TOKEN_REQUEST_INVALID: WireForm("UNSUPPORTED", 400),
    BODY_TOO_LARGE: WireForm("SIZE_INVALID", 413),
    # The spec's 416 for a chunk out of order.
    UPLOAD_RANGE_INVALID: WireForm("BLOB_UPLOAD_INVALID", 416),
    # 416, the range disagreeing with the blob's length.
    RANGE_NOT_SATISFIABLE: WireForm("SIZE_INVALID", 416),
    NO_SUCH_ENDPOINT: WireForm("UNSUPPORTED", 404),
    METHOD_UNSUPPORTED: WireForm("UNSUPPORTED", 405),
    # The spec's answer to a delete a registry does not do is 405 (or 400)
    # with UNSUPPORTED: 405 is in the spec's failure statuses of both delete
    # endpoints and clients know it as "this registry will not delete that";
    # 409, HTTP's closer word, is in neither, and DENIED would send the
    # client looking for a permission.
    DELETE_REFUSED: WireForm("UNSUPPORTED", 405),
    # The table has no code for a server-side failure. The 503 says it to
    # HTTP clients (docker, podman and skopeo go by the status of a 5xx and
    # read no error body off it); TOOMANYREQUESTS is the one code whose
    # answer is the right one for anyone who does read the body: back off
    # and try again.
    UNAVAILABLE: WireForm("TOOMANYREQUESTS", 503),
    # The table has no code for a full disk. 507 Insufficient Storage says
    # what is wrong even to clients that read no 5xx body (skopeo 1.9
    # printed "received unexpected HTTP status: 507 Insufficient Storage
    # Space"; docker's client reads none either), and is not one a client
    # retries at once (a 503 is, and the disk stays full for the retries).
    # DENIED is the table's code for "not accepted, and not your input's
    # fault": registries that enforce storage quotas (Harbor, GitLab)
    # answer DENIED.
    STORAGE_FULL: WireForm("DENIED", 507),
    # The table has no code for a failure of the registry's own either, and
    # a body may carry no other: `oci_error` sends an empty list.
    INTERNAL: WireForm("INTERNAL", 500),
    # The management API's own.
    INVALID: WireForm("INVALID", 400),
    VERSION_UNKNOWN: WireForm("VERSION_UNKNOWN", 404),
    DISTRIBUTION_UNKNOWN: WireForm("DISTRIBUTION_UNKNOWN", 404),
    CONTENT_UNKNOWN: WireForm("CONTENT_UNKNOWN", 404),
    STATE_CONFLICT: WireForm("CONFLICT", 409),
    TAG_INVALID: WireForm("TAG_INVALID", 400),
    NOT_FOUND: WireForm("NOT_FOUND", 404),
}

#: How an API writes an error into the response: the body, with status and headers set.
Render = Callable[[IRequest, RegistryError], bytes]

#: The field a management API error is about, when its code says it.
_FIELDS = {NAME_INVALID: "name", TAG_INVALID: "tag", DIGEST_INVALID: "digest"}


def install_error_handlers(
    app: Klein, render: Render, unmatched: Callable[[IRequest], ErrorCode]
) -> None:
    """Answer every failure of `app`'s requests with an error rendered by `render`.

    A RegistryError is rendered as raised; a path that matches no route is
    `unmatched(request)`, a method its route does not take METHOD_UNSUPPORTED,
    and anything else is logged and answered as INTERNAL.
    """

    def handler(answer: Callable[[IRequest, Failure], bytes]) -> Callable[..., bytes]:
        # Klein passes an app's instance first when the app is a class's
        # attribute (bound to the instance), and not when it stands alone.
        def handle(*args: Any) -> bytes:
            request, failure = args[-2:]
            return answer(request, failure)

        return handle

    def registry_error(request: IRequest, failure: Failure) -> bytes:
        return render(request, failure.value)

    def not_found(request: IRequest, failure: Failure) -> bytes:
        return render(request, RegistryError(unmatched(request)))

    def method_not_allowed(request: IRequest, failure: Failure) -> bytes:
        return render(request, RegistryError(METHOD_UNSUPPORTED))

    def unexpected(request: IRequest, failure: Failure) -> bytes:
        _log.failure("unexpected error serving {method} {uri}", failure,
                     method=request.method, uri=request.uri)
        return render(request, RegistryError(INTERNAL))

    # Klein tries the handlers in this order: the catch-all last.
    app.handle_errors(RegistryError)(handler(registry_error))
    app.handle_errors(NotFound)(handler(not_found))
    app.handle_errors(MethodNotAllowed)(handler(method_not_allowed))
    app.handle_errors(Exception)(handler(unexpected))


def error_headers(error: RegistryError) -> dict[str, str]:
    """The headers an answer of `error` carries: the raiser's, and those its fields imply.

    A chunk that does not fit its upload says where the upload ends, so the
    client can resume from there; a client over its upload sessions is told
    when to try again.
    """
    headers: dict[str, str] = {}
    if isinstance(error, UploadRangeInvalid):
        headers["Range"] = upload_range(error.size)
        headers["Location"] = upload_location(error.name, error.uuid)
    elif isinstance(error, TooManyUploads):
        headers["Retry-After"] = str(error.retry_after)
    headers.update(error.headers)
    return headers


def _set_headers(request: IRequest, error: RegistryError) -> None:
    for key, value in error_headers(error).items():
        request.setHeader(key, str(value))


def _allowed_methods(request: IRequest) -> str:
    """The methods the request's path takes, but the request's own (for a 405's Allow)."""
    try:
        methods = IKleinRequest(request).mapper.allowed_methods()
    except HTTPException:
        methods = []
    refused = request.method.decode("latin-1")
    return ", ".join(m for m in sorted(methods) if m != refused)


def oci_error(request: IRequest, error: RegistryError) -> bytes:
    """`error` in the distribution spec's error JSON: `{"errors": [{code, message, detail}]}`."""
    wire = WIRE[error.code]
    _set_headers(request, error)
    if wire.status == 405 and "Allow" not in error_headers(error):
        # HTTP requires it: what the resource still takes (for a refused delete, the rest).
        request.setHeader("Allow", _allowed_methods(request))
    if error.code == INTERNAL:
        return json_response(request, {"errors": []}, wire.status)
    body: dict[str, object] = {"code": wire.code, "message": error.message}
    if error.detail is not None:
        body["detail"] = error.detail
    return json_response(request, {"errors": [body]}, wire.status)


def early_answer(error: RegistryError, management: bool) -> tuple[int, bytes]:
    """The status and body of `error` for an answer sent before its request's body is read.

    `management`: in the management API's shape (code and message), else the OCI error JSON.
    """
    wire = WIRE[error.code]
    if management:
        return wire.status, json.dumps(
            {"error": {"code": wire.code, "message": error.message}}
        ).encode()
    body: dict[str, object] = {"code": wire.code, "message": error.message}
    if error.detail is not None:
        body["detail"] = error.detail
    return wire.status, json.dumps({"errors": [body]}).encode()


def management_error(request: IRequest, error: RegistryError) -> bytes:
    """`error` as the management API sends it: `{"error": {code, message, field?, detail?}}`.

    A bad input's detail names the offending field as `{"field": …}`; it is
    lifted out of the detail.
    """
    wire = WIRE[error.code]
    _set_headers(request, error)
    body: dict[str, object] = {"code": wire.code, "message": error.message}
    detail = error.detail
    field = _FIELDS.get(error.code) if wire.status == 400 else None
    if isinstance(detail, dict) and "field" in detail:
        detail = dict(detail)
        field = detail.pop("field")
    if field is not None:
        body["field"] = field
    if detail:
        body["detail"] = detail
    return json_response(request, {"error": body}, wire.status)
