"""The error path every Klein app shares (ocireg.api.errors), driven in memory.

Each app gets its handlers from `install_error_handlers` and its body format
from the renderer it passes; every error code has one wire form.
"""

from __future__ import annotations

import json

import pytest
from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

import ocireg.api.errors
import ocireg.errors
from ocireg.api.errors import WIRE, install_error_handlers, management_error, oci_error
from ocireg.errors import DELETE_REFUSED, NAME_INVALID, ErrorCode, RegistryError
from tests.test_api_error_codes import SPEC_CODES

#: Codes of the management API, sent only by it.
_MANAGEMENT_ONLY = {"INVALID", "VERSION_UNKNOWN", "DISTRIBUTION_UNKNOWN", "CONTENT_UNKNOWN",
                    "CONFLICT", "TAG_INVALID", "NOT_FOUND"}


def _codes(module) -> list[ErrorCode]:
    return [v for v in vars(module).values() if isinstance(v, ErrorCode)]


def test_every_error_code_has_one_wire_form_and_registry_codes_are_the_specs():
    codes = _codes(ocireg.errors) + _codes(ocireg.api.errors)
    assert [c for c in codes if c not in WIRE] == []
    for code, wire in WIRE.items():
        assert 400 <= wire.status < 600, code
        if code != ocireg.api.errors.INTERNAL:
            assert wire.code in SPEC_CODES | _MANAGEMENT_ONLY, code


class _Bound:
    """An app as a class attribute: Klein hands its handlers the instance."""

    app = Klein()

    @app.route("/bad", methods=["GET", "DELETE"])
    def bad(self, request):
        raise RegistryError(NAME_INVALID, "no such name", {"name": "X"})

    @app.route("/refused", methods=["GET", "DELETE"])
    def refused(self, request):
        raise RegistryError(DELETE_REFUSED)

    @app.route("/broken", methods=["GET"])
    def broken(self, request):
        raise ZeroDivisionError("a bug")


def _bad(request):
    raise RegistryError(NAME_INVALID, "no such name", {"name": "X"})


def _refused(request):
    raise RegistryError(DELETE_REFUSED)


def _broken(request):
    raise ZeroDivisionError("a bug")


def _unbound() -> Klein:
    """An app of its own, as the token endpoint builds: no instance."""
    app = Klein()
    app.route("/bad", methods=["GET", "DELETE"])(_bad)
    app.route("/refused", methods=["GET", "DELETE"])(_refused)
    app.route("/broken", methods=["GET"])(_broken)
    return app


install_error_handlers(_Bound.app, oci_error, lambda request: ocireg.api.errors.NO_SUCH_ENDPOINT)


def _result(d: Deferred):
    results: list = []
    d.addBoth(results.append)
    assert results, "the request did not finish in memory"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def _request(resource, method: str, path: str) -> tuple[int, dict, object]:
    stub = StubTreq(resource)
    response = _result(stub.request(method, "http://registry.test" + path))
    body = stub.content(response)
    stub.flush()
    headers = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()
               if k.lower() in (b"content-type", b"allow")}
    return response.code, headers, json.loads(_result(body))


@pytest.fixture
def logged():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)


def _apps():
    unbound = _unbound()
    install_error_handlers(unbound, oci_error,
                           lambda request: ocireg.api.errors.NO_SUCH_ENDPOINT)
    return {"bound": _Bound().app.resource(), "unbound": unbound.resource()}


@pytest.mark.parametrize("kind", ["bound", "unbound"])
def test_oci_errors_of_an_app_bound_or_not_carry_the_wire_code_status_and_allow(kind):
    resource = _apps()[kind]
    assert _request(resource, "GET", "/bad") == (
        400, {"content-type": "application/json"},
        {"errors": [{"code": "NAME_INVALID", "message": "no such name", "detail": {"name": "X"}}]},
    )
    status, headers, body = _request(resource, "DELETE", "/refused")
    assert (status, headers["allow"], body["errors"][0]["code"]) == (405, "GET, HEAD",
                                                                      "UNSUPPORTED")
    status, headers, body = _request(resource, "PUT", "/bad")
    assert (status, headers["allow"], body["errors"][0]["code"]) == (405, "DELETE, GET, HEAD",
                                                                      "UNSUPPORTED")
    status, _, body = _request(resource, "GET", "/nothing")
    assert (status, body["errors"][0]["code"]) == (404, "UNSUPPORTED")


@pytest.mark.parametrize("kind", ["bound", "unbound"])
def test_an_unexpected_failure_is_logged_and_answered_500_with_no_code(kind, logged):
    assert _request(_apps()[kind], "GET", "/broken") == (
        500, {"content-type": "application/json"}, {"errors": []},
    )
    failures = [e for e in logged if e.get("log_failure") is not None]
    assert [f["log_failure"].type for f in failures] == [ZeroDivisionError]
    assert failures[0]["uri"] == b"/broken"


def test_the_management_format_names_the_field_and_has_its_own_500(logged):
    app = _unbound()
    install_error_handlers(app, management_error, lambda request: ocireg.api.errors.NOT_FOUND)
    resource = app.resource()
    assert _request(resource, "GET", "/bad")[::2] == (
        400, {"error": {"code": "NAME_INVALID", "message": "no such name", "field": "name",
                        "detail": {"name": "X"}}},
    )
    assert _request(resource, "GET", "/broken")[::2] == (
        500, {"error": {"code": "INTERNAL", "message": "internal error"}},
    )
    assert _request(resource, "PUT", "/bad")[::2] == (
        405, {"error": {"code": "UNSUPPORTED", "message": "the operation is unsupported"}},
    )
    assert _request(resource, "GET", "/nothing")[::2] == (
        404, {"error": {"code": "NOT_FOUND", "message": "no such endpoint"}},
    )
