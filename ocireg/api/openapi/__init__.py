"""The OpenAPI 3 document of the management API, served at `/api/v1/openapi.json`.

Written by hand next to the routes of `ocireg/api/management.py`, one
module per group of operations; the schemathesis test
(tests/test_openapi_fuzz.py) fuzzes the API from it and fails when a
response strays from it.
"""

from __future__ import annotations

import copy

from ocireg.api.openapi import distributions, housekeeping, repositories
from ocireg.api.openapi.builders import json_response
from ocireg.api.openapi.schemas import RESPONSES, SCHEMAS


def document() -> dict:
    """The OpenAPI document (a fresh copy: callers may change it)."""
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {
            "title": "ocireg management API",
            "version": "1",
            "description": "Repositories, their versions, staging and distributions. "
                           "Errors are {\"error\": {code, message, field?, detail?}}.",
        },
        "paths": _paths(),
        "components": {"schemas": SCHEMAS, "responses": RESPONSES},
    })


def _paths() -> dict:
    return {
        "/api/v1/openapi.json": {
            "get": {
                "summary": "this document",
                "operationId": "openapi",
                "responses": {"200": json_response({"type": "object"}, "the OpenAPI document")},
            }
        },
        **repositories.paths(),
        **housekeeping.paths(),
        **distributions.paths(),
    }
