"""The pieces the management API's OpenAPI document is built of.

Schemas of common values, the path and query parameters several operations
share, and helpers for JSON bodies, JSON responses and error responses.
"""

from __future__ import annotations

# Repository names with '/' in them are sent as they are: '/api/v1/repositories/team/app'.
# The document describes one path component so that generated names stay routable.
NAME_PATTERN = r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$"

TIME = {"type": "number", "description": "seconds since the epoch"}
DIGEST = {"type": "string", "example": "sha256:" + "0" * 64}
NULLABLE_INT = {"type": ["integer", "null"]}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_responses(*statuses: int) -> dict:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def path_param(name: str, schema: dict, description: str, example: object = None) -> dict:
    parameter = {"name": name, "in": "path", "required": True, "schema": schema,
                 "description": description}
    if example is not None:
        parameter["example"] = example
    return parameter


def query_param(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


NAME_PARAM = path_param("name", {"type": "string", "pattern": NAME_PATTERN, "maxLength": 255},
                    "repository name", "library")
NUMBER_PARAM = path_param("number", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                      "version number", 1)
BASE_PATH_PARAM = path_param("base_path",
                         {"type": "string", "pattern": NAME_PATTERN, "maxLength": 255},
                         "distribution base path", "library")
LIMIT_PARAM = query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                      "page size (default 100)")


def json_body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}
