"""The OpenAPI 3 document of the management API, served at `/api/v1/openapi.json`.

Written by hand next to the routes of `management.py`; the schemathesis test
(tests/test_openapi_fuzz.py) fuzzes the API from it and fails when a
response strays from it.
"""

from __future__ import annotations

import copy

# Repository names with '/' in them are sent as they are: '/api/v1/repositories/team/app'.
# The document describes one path component so that generated names stay routable.
_NAME_PATTERN = r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$"

_TIME = {"type": "number", "description": "seconds since the epoch"}
_DIGEST = {"type": "string", "example": "sha256:" + "0" * 64}
_NULLABLE_INT = {"type": ["integer", "null"]}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _response(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def _path_param(name: str, schema: dict, description: str, example: object = None) -> dict:
    parameter = {"name": name, "in": "path", "required": True, "schema": schema,
                 "description": description}
    if example is not None:
        parameter["example"] = example
    return parameter


def _query_param(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


_NAME = _path_param("name", {"type": "string", "pattern": _NAME_PATTERN, "maxLength": 255},
                    "repository name", "library")
_NUMBER = _path_param("number", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                      "version number", 1)
_BASE_PATH = _path_param("base_path",
                         {"type": "string", "pattern": _NAME_PATTERN, "maxLength": 255},
                         "distribution base path", "library")
_LIMIT = _query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                      "page size (default 100)")


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_SCHEMAS: dict = {
    "Collection": {
        "type": "object",
        "required": ["started", "duration", "dry_run", "manifests", "blobs", "bytes",
                     "stray_files"],
        "properties": {
            "started": _TIME,
            "duration": {"type": "number", "description": "seconds"},
            "dry_run": {"type": "boolean"},
            "manifests": {"type": "integer", "description": "manifests removed"},
            "blobs": {"type": "integer", "description": "blobs removed"},
            "bytes": {"type": "integer", "description": "bytes freed"},
            "stray_files": {"type": "integer",
                            "description": "blob files without metadata removed"},
        },
    },
    "Scrub": {
        "type": "object",
        "required": ["checked", "missing", "corrupt", "healthy"],
        "properties": {
            "checked": {"type": "integer"},
            "missing": {"type": "array", "items": _DIGEST},
            "corrupt": {"type": "array", "items": _DIGEST},
            "healthy": {"type": "boolean"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                    "detail": {},
                },
            }
        },
    },
    "Counts": {
        "type": "object",
        "required": ["tags", "manifests", "blobs"],
        "properties": {k: {"type": "integer", "minimum": 0}
                       for k in ("tags", "manifests", "blobs")},
    },
    "Repository": {
        "type": "object",
        "required": ["name", "latest_version", "created", "retain_versions", "tags", "manifests",
                     "size", "unique_size", "distributions"],
        "properties": {
            "name": {"type": "string"},
            "latest_version": {"type": "integer", "minimum": 0},
            "created": _TIME,
            "retain_versions": _NULLABLE_INT,
            "tags": {"type": "integer", "minimum": 0},
            "manifests": {"type": "integer", "minimum": 0},
            "size": {"type": "integer", "minimum": 0, "description": "bytes of its blobs"},
            "unique_size": {"type": "integer", "minimum": 0,
                            "description": "bytes of its blobs no other repository holds"},
            "distributions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Version": {
        "type": "object",
        "required": ["repository", "number", "base_version", "reason", "created", "added",
                     "removed", "present"],
        "properties": {
            "repository": {"type": "string"},
            "number": {"type": "integer", "minimum": 0},
            "base_version": _NULLABLE_INT,
            "reason": {"type": "string"},
            "created": _TIME,
            "added": _ref("Counts"),
            "removed": _ref("Counts"),
            "present": _ref("Counts"),
        },
    },
    "Change": {
        "type": "object",
        "required": ["repository", "version", "created"],
        "properties": {
            "repository": {"type": "string"},
            "version": {"type": "integer"},
            "created": {"type": "boolean", "description": "false when nothing changed"},
        },
    },
    "Added": {
        "type": "object",
        "required": ["added", "removed"],
        "properties": {
            "added": {"type": "array", "items": {"type": "string"}},
            "removed": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Diff": {
        "type": "object",
        "required": ["repository", "base", "target", "tags", "manifests", "blobs"],
        "properties": {
            "repository": {"type": "string"},
            "base": {"type": "integer"},
            "target": {"type": "integer"},
            "tags": {
                "type": "object",
                "required": ["added", "removed", "moved"],
                "properties": {
                    "added": {"type": "object", "additionalProperties": {"type": "string"}},
                    "removed": {"type": "object", "additionalProperties": {"type": "string"}},
                    "moved": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "required": ["from", "to"],
                            "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
                        },
                    },
                },
            },
            "manifests": _ref("Added"),
            "blobs": _ref("Added"),
        },
    },
    "Distribution": {
        "type": "object",
        "required": ["base_path", "repository", "version", "serves", "created"],
        "properties": {
            "base_path": {"type": "string"},
            "repository": {"type": "string"},
            "version": {**_NULLABLE_INT, "description": "the pinned version; null: the latest"},
            "serves": {"type": "integer", "description": "the version a pull serves now"},
            "created": _TIME,
        },
    },
}

_RESPONSES = {
    f"E{status}": _response(_ref("Error"), text)
    for status, text in {
        400: "bad input; `field` names the offending field",
        404: "no such repository, version, distribution or content",
        409: "conflicts with the current state",
        413: "body too large",
    }.items()
}


def _ops() -> dict:
    name, number, base_path = _NAME, _NUMBER, _BASE_PATH
    versions = "/api/v1/repositories/{name}/versions"
    return {
        "/api/v1/openapi.json": {
            "get": {
                "summary": "this document",
                "operationId": "openapi",
                "responses": {"200": _response({"type": "object"}, "the OpenAPI document")},
            }
        },
        "/api/v1/repositories/": {
            "get": {
                "summary": "list repositories, by name",
                "operationId": "listRepositories",
                "parameters": [
                    _query_param("prefix", {"type": "string"}, "only names starting with this"),
                    _LIMIT,
                    _query_param("after", {"type": "string"}, "the `next` of the previous page"),
                ],
                "responses": {
                    "200": _response({
                        "type": "object",
                        "required": ["repositories", "next"],
                        "properties": {
                            "repositories": {"type": "array", "items": _ref("Repository")},
                            "next": {"type": ["string", "null"]},
                        },
                    }, "a page of repositories"),
                    **_errors(400),
                },
            },
            "post": {
                "summary": "create a repository (and a distribution of the same base path)",
                "operationId": "createRepository",
                "requestBody": _body({
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "retain_versions": {"type": ["integer", "null"], "minimum": 1},
                        "distribute": {"type": "boolean"},
                    },
                }),
                "responses": {"201": _response(_ref("Repository"), "created"),
                              **_errors(400, 409, 413)},
            },
        },
        "/api/v1/repositories/{name}": {
            "parameters": [name],
            "get": {
                "summary": "a repository: latest version, sizes, counts",
                "operationId": "showRepository",
                "responses": {"200": _response(_ref("Repository"), "the repository"),
                              **_errors(400, 404)},
            },
            "patch": {
                "summary": "set how many versions to keep",
                "operationId": "updateRepository",
                "requestBody": _body({
                    "type": "object",
                    "required": ["retain_versions"],
                    "properties": {"retain_versions": {"type": ["integer", "null"],
                                                       "minimum": 1}},
                }),
                "responses": {"200": _response(_ref("Repository"), "the repository"),
                              **_errors(400, 404, 413)},
            },
            "delete": {
                "summary": "delete a repository and its distributions; its content is orphaned",
                "operationId": "deleteRepository",
                "responses": {"204": {"description": "deleted"}, **_errors(400, 404)},
            },
        },
        f"{versions}/": {
            "parameters": [name],
            "get": {
                "summary": "list a repository's versions, oldest first",
                "operationId": "listVersions",
                "responses": {
                    "200": _response({
                        "type": "object",
                        "required": ["repository", "versions"],
                        "properties": {
                            "repository": {"type": "string"},
                            "versions": {"type": "array", "items": _ref("Version")},
                        },
                    }, "the versions"),
                    **_errors(400, 404),
                },
            },
        },
        f"{versions}/{{number}}": {
            "parameters": [name, number],
            "get": {
                "summary": "one version",
                "operationId": "showVersion",
                "responses": {"200": _response(_ref("Version"), "the version"),
                              **_errors(400, 404)},
            },
            "delete": {
                "summary": "delete a version; its changes fold into the next",
                "operationId": "deleteVersion",
                "responses": {"204": {"description": "deleted"}, **_errors(400, 404, 409)},
            },
        },
        f"{versions}/{{number}}/content": {
            "parameters": [name, number],
            "get": {
                "summary": "everything a version holds",
                "operationId": "versionContent",
                "responses": {
                    "200": _response({
                        "type": "object",
                        "required": ["repository", "version", "tags", "manifests", "blobs"],
                        "properties": {
                            "repository": {"type": "string"},
                            "version": {"type": "integer"},
                            "tags": {"type": "object",
                                     "additionalProperties": {"type": "string"}},
                            "manifests": {"type": "array", "items": {"type": "string"}},
                            "blobs": {"type": "array", "items": {"type": "string"}},
                        },
                    }, "the content"),
                    **_errors(400, 404),
                },
            },
        },
        f"{versions}/{{number}}/content/{{kind}}": {
            "parameters": [
                name, number,
                _path_param("kind", {"type": "string", "enum": ["tags", "manifests", "blobs"]},
                            "content kind"),
            ],
            "get": {
                "summary": "a version's content of one kind, a page at a time",
                "operationId": "versionContentPage",
                "parameters": [_LIMIT, _query_param("after", {"type": "string"},
                                                    "the `next` of the previous page")],
                "responses": {
                    "200": _response({
                        "type": "object",
                        "required": ["repository", "version", "kind", "items", "next"],
                        "properties": {
                            "repository": {"type": "string"},
                            "version": {"type": "integer"},
                            "kind": {"type": "string"},
                            "items": {"type": "array", "items": {
                                "type": "object",
                                "required": ["digest"],
                                "properties": {"name": {"type": "string"}, "digest": _DIGEST},
                            }},
                            "next": {"type": ["string", "null"]},
                        },
                    }, "a page of content"),
                    **_errors(400, 404),
                },
            },
        },
        f"{versions}/{{base}}/diff/{{target}}": {
            "parameters": [
                name,
                _path_param("base", number["schema"], "the version to compare from"),
                _path_param("target", number["schema"], "the version to compare to"),
            ],
            "get": {
                "summary": "what changed from one version to another",
                "operationId": "diffVersions",
                "responses": {"200": _response(_ref("Diff"), "the changes"), **_errors(400, 404)},
            },
        },
        "/api/v1/repositories/{name}/rollback": {
            "parameters": [name],
            "post": {
                "summary": "a new version whose content equals an older one's",
                "operationId": "rollback",
                "requestBody": _body({
                    "type": "object", "required": ["version"],
                    "properties": {"version": {"type": "integer", "minimum": 0}},
                }),
                "responses": {
                    "201": _response(_ref("Change"), "a new version"),
                    "200": _response(_ref("Change"), "the latest version already holds that"),
                    **_errors(400, 404, 409, 413),
                },
            },
        },
        "/api/v1/repositories/{name}/modify": {
            "parameters": [name],
            "post": {
                "summary": "a new version with tags and manifests added or removed",
                "description": "Removals first. A removed manifest takes its tags and the "
                               "blobs nothing else needs; added manifests and tags come from "
                               "`source` (default: this repository's latest version) with "
                               "their whole closure.",
                "operationId": "modify",
                "requestBody": _body({
                    "type": "object",
                    "properties": {
                        "add_tags": {"type": "object",
                                     "additionalProperties": {"type": "string"},
                                     "description": "new tag -> tag or digest in the source"},
                        "remove_tags": {"type": "array", "items": {"type": "string"}},
                        "add_manifests": {"type": "array", "items": _DIGEST},
                        "remove_manifests": {"type": "array", "items": _DIGEST},
                        "source": {
                            "type": "object",
                            "properties": {
                                "repository": {"type": "string"},
                                "version": {"type": ["integer", "null"], "minimum": 0},
                            },
                        },
                    },
                }),
                "responses": {
                    "201": _response(_ref("Change"), "a new version"),
                    "200": _response(_ref("Change"), "nothing changed"),
                    **_errors(400, 404, 409, 413),
                },
            },
        },
        "/api/v1/repositories/{name}/staging": {
            "parameters": [name],
            "get": {
                "summary": "what the staging version holds",
                "operationId": "showStaging",
                "responses": {
                    "200": _response({
                        "type": "object",
                        "required": ["repository", "age", "content", "uploads"],
                        "properties": {
                            "repository": {"type": "string"},
                            "age": {"type": ["number", "null"],
                                    "description": "seconds since the oldest item was staged"},
                            "content": {"type": "array", "items": {
                                "type": "object",
                                "required": ["kind", "digest", "created"],
                                "properties": {"kind": {"type": "string"},
                                               "digest": {"type": "string"},
                                               "created": _TIME},
                            }},
                            "uploads": {"type": "array", "items": {
                                "type": "object",
                                "required": ["uuid", "base_path", "created", "updated"],
                                "properties": {"uuid": {"type": "string"},
                                               "base_path": {"type": "string"},
                                               "created": _TIME, "updated": _TIME},
                            }},
                        },
                    }, "the staging version"),
                    **_errors(400, 404),
                },
            },
            "delete": {
                "summary": "discard the staging version",
                "operationId": "discardStaging",
                "responses": {
                    "200": _response({
                        "type": "object", "required": ["repository", "discarded"],
                        "properties": {"repository": {"type": "string"},
                                       "discarded": {"type": "integer"}},
                    }, "how many items were discarded"),
                    **_errors(400, 404),
                },
            },
        },
        "/api/v1/gc": {
            "get": {
                "summary": "the outcomes of recent garbage collections, newest first",
                "operationId": "listCollections",
                "responses": {"200": _response({
                    "type": "object",
                    "required": ["runs"],
                    "properties": {"runs": {"type": "array", "items": _ref("Collection")}},
                }, "recent collections")},
            },
            "post": {
                "summary": "collect garbage now (dry_run: only report what would go)",
                "operationId": "collect",
                "requestBody": {**_body({
                    "type": "object",
                    "properties": {"dry_run": {"type": "boolean"}},
                }), "required": False},
                "responses": {
                    "200": _response(_ref("Collection"), "what was (or would be) removed"),
                    **_errors(400, 413),
                },
            },
        },
        "/api/v1/scrub": {
            "post": {
                "summary": "verify every blob's bytes; corrupt ones are moved aside",
                "operationId": "scrub",
                "responses": {"200": _response(_ref("Scrub"), "what is wrong, if anything")},
            },
        },
        "/api/v1/distributions/": {
            "get": {
                "summary": "list distributions, by base path",
                "operationId": "listDistributions",
                "parameters": [
                    _query_param("repository", {"type": "string", "pattern": _NAME_PATTERN},
                                 "only those serving this repository"),
                    _LIMIT,
                    _query_param("after", {"type": "string"}, "the `next` of the previous page"),
                ],
                "responses": {
                    "200": _response({
                        "type": "object",
                        "required": ["distributions", "next"],
                        "properties": {
                            "distributions": {"type": "array", "items": _ref("Distribution")},
                            "next": {"type": ["string", "null"]},
                        },
                    }, "a page of distributions"),
                    **_errors(400, 404),
                },
            },
            "post": {
                "summary": "serve a repository (its latest or a pinned version) at a base path",
                "operationId": "createDistribution",
                "requestBody": _body({
                    "type": "object",
                    "required": ["base_path", "repository"],
                    "properties": {
                        "base_path": {"type": "string"},
                        "repository": {"type": "string"},
                        "version": {"type": ["integer", "null"], "minimum": 0},
                    },
                }),
                "responses": {"201": _response(_ref("Distribution"), "created"),
                              **_errors(400, 404, 409, 413)},
            },
        },
        "/api/v1/distributions/{base_path}": {
            "parameters": [base_path],
            "get": {
                "summary": "a distribution",
                "operationId": "showDistribution",
                "responses": {"200": _response(_ref("Distribution"), "the distribution"),
                              **_errors(400, 404)},
            },
            "patch": {
                "summary": "pin (version: N), unpin (version: null), or move to a repository",
                "operationId": "updateDistribution",
                "requestBody": _body({
                    "type": "object",
                    "properties": {
                        "repository": {"type": "string"},
                        "version": {"type": ["integer", "null"], "minimum": 0},
                    },
                }),
                "responses": {"200": _response(_ref("Distribution"), "the distribution"),
                              **_errors(400, 404, 413)},
            },
            "delete": {
                "summary": "stop serving a base path",
                "operationId": "deleteDistribution",
                "responses": {"204": {"description": "deleted"}, **_errors(400, 404)},
            },
        },
    }


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
        "paths": _ops(),
        "components": {"schemas": _SCHEMAS, "responses": _RESPONSES},
    })
