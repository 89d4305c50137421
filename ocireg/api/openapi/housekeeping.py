"""The management API's garbage collection and scrub operations."""

from __future__ import annotations

from ocireg.api.openapi.builders import (
    error_responses,
    json_body,
    json_response,
    ref,
)


def paths() -> dict:
    """The operations, by path."""

    return {
        "/api/v1/gc": {
            "get": {
                "summary": "the outcomes of recent garbage collections, newest first",
                "operationId": "listCollections",
                "responses": {"200": json_response({
                    "type": "object",
                    "required": ["runs"],
                    "properties": {"runs": {"type": "array", "items": ref("Collection")}},
                }, "recent collections")},
            },
            "post": {
                "summary": "collect garbage now (dry_run: only report what would go)",
                "operationId": "collect",
                "requestBody": {**json_body({
                    "type": "object",
                    "properties": {"dry_run": {"type": "boolean"}},
                }), "required": False},
                "responses": {
                    "200": json_response(ref("Collection"), "what was (or would be) removed"),
                    **error_responses(400, 413),
                },
            },
        },
        "/api/v1/scrub": {
            "post": {
                "summary": "verify every blob's bytes; corrupt ones are moved aside",
                "operationId": "scrub",
                "responses": {"200": json_response(ref("Scrub"), "what is wrong, if anything")},
            },
        },
    }
