"""The management API's operations on distributions."""

from __future__ import annotations

from ocireg.api.openapi.builders import (
    BASE_PATH_PARAM,
    LIMIT_PARAM,
    NAME_PATTERN,
    error_responses,
    json_body,
    json_response,
    query_param,
    ref,
)


def paths() -> dict:
    """The operations, by path."""
    base_path = BASE_PATH_PARAM
    return {
        "/api/v1/distributions/": {
            "get": {
                "summary": "list distributions, by base path",
                "operationId": "listDistributions",
                "parameters": [
                    query_param("repository", {"type": "string", "pattern": NAME_PATTERN},
                                 "only those serving this repository"),
                    LIMIT_PARAM,
                    query_param("after", {"type": "string"}, "the `next` of the previous page"),
                ],
                "responses": {
                    "200": json_response({
                        "type": "object",
                        "required": ["distributions", "next"],
                        "properties": {
                            "distributions": {"type": "array", "items": ref("Distribution")},
                            "next": {"type": ["string", "null"]},
                        },
                    }, "a page of distributions"),
                    **error_responses(400, 404),
                },
            },
            "post": {
                "summary": "serve a repository (its latest or a pinned version) at a base path",
                "operationId": "createDistribution",
                "requestBody": json_body({
                    "type": "object",
                    "required": ["base_path", "repository"],
                    "properties": {
                        "base_path": {"type": "string"},
                        "repository": {"type": "string"},
                        "version": {"type": ["integer", "null"], "minimum": 0},
                    },
                }),
                "responses": {"201": json_response(ref("Distribution"), "created"),
                              **error_responses(400, 404, 409, 413)},
            },
        },
        "/api/v1/distributions/{base_path}": {
            "parameters": [base_path],
            "get": {
                "summary": "a distribution",
                "operationId": "showDistribution",
                "responses": {"200": json_response(ref("Distribution"), "the distribution"),
                              **error_responses(400, 404)},
            },
            "patch": {
                "summary": "pin (version: N), unpin (version: null), or move to a repository",
                "operationId": "updateDistribution",
                "requestBody": json_body({
                    "type": "object",
                    "properties": {
                        "repository": {"type": "string"},
                        "version": {"type": ["integer", "null"], "minimum": 0},
                    },
                }),
                "responses": {"200": json_response(ref("Distribution"), "the distribution"),
                              **error_responses(400, 404, 413)},
            },
            "delete": {
                "summary": "stop serving a base path",
                "operationId": "deleteDistribution",
                "responses": {"204": {"description": "deleted"}, **error_responses(400, 404)},
            },
        },
    }
