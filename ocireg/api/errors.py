"""The error path of every Klein app: one set of handlers, each API's own error format.

The registry API (`/v2/`) and the token endpoint answer in the distribution
spec's error JSON (`oci_error`), the management API as `{"error": {...}}`
(`management_error`). `install_error_handlers` gives an app its format, and
with it the same answer to a path no route takes, a method the path does not
take, and a failure nobody expected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from klein import Klein
from klein.interfaces import IKleinRequest
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ocireg.api.render import json_response
from ocireg.errors import METHOD_UNSUPPORTED, ErrorCode, RegistryError

_log = Logger()

#: How an API writes an error into the response: the body, with status and headers set.
Render = Callable[[IRequest, RegistryError], bytes]

#: A failure of the registry's own: the log has the cause, the client only the status.
INTERNAL = ErrorCode("INTERNAL", 500, "internal error")

#: The field a management API error is about, when its code says it.
_FIELDS = {"NAME_INVALID": "name", "TAG_INVALID": "tag", "DIGEST_INVALID": "digest"}


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


def _set_headers(request: IRequest, error: RegistryError) -> None:
    for key, value in error.headers.items():
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
    _set_headers(request, error)
    if error.status == 405 and "Allow" not in error.headers:
        # HTTP requires it: what the resource still takes (for a refused delete, the rest).
        request.setHeader("Allow", _allowed_methods(request))
    if error.code == INTERNAL:
        # The spec's table has no code for a failure of the registry's own and
        # a body may carry no other: the list is empty, the status says it.
        return json_response(request, {"errors": []}, error.status)
    body: dict[str, object] = {"code": error.code.name, "message": error.message}
    if error.detail is not None:
        body["detail"] = error.detail
    return json_response(request, {"errors": [body]}, error.status)


def management_error(request: IRequest, error: RegistryError) -> bytes:
    """`error` as the management API sends it: `{"error": {code, message, field?, detail?}}`.

    A bad input's detail names the offending field as `{"field": …}`; it is
    lifted out of the detail.
    """
    _set_headers(request, error)
    body: dict[str, object] = {"code": error.code.name, "message": error.message}
    detail = error.detail
    field = _FIELDS.get(error.code.name) if error.status == 400 else None
    if isinstance(detail, dict) and "field" in detail:
        detail = dict(detail)
        field = detail.pop("field")
    if field is not None:
        body["field"] = field
    if detail:
        body["detail"] = detail
    return json_response(request, {"error": body}, error.status)
