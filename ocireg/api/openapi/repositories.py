"""The management API's operations on repositories, their versions and staging."""

from __future__ import annotations

from ocireg.api.openapi.builders import (
    DIGEST,
    LIMIT_PARAM,
    NAME_PARAM,
    NUMBER_PARAM,
    TIME,
    error_responses,
    json_body,
    json_response,
    path_param,
    query_param,
    ref,
)


def paths() -> dict:
    """The operations, by path."""
    name = NAME_PARAM
    number = NUMBER_PARAM
    versions = "/api/v1/repositories/{name}/versions"
    return {
        "/api/v1/repositories/": {
            "get": {
                "summary": "list repositories, by name",
                "operationId": "listRepositories",
                "parameters": [
                    query_param("prefix", {"type": "string"}, "only names starting with this"),
                    LIMIT_PARAM,
                    query_param("after", {"type": "string"}, "the `next` of the previous page"),
                ],
                "responses": {
                    "200": json_response({
                        "type": "object",
                        "required": ["repositories", "next"],
                        "properties": {
                            "repositories": {"type": "array", "items": ref("Repository")},
                            "next": {"type": ["string", "null"]},
                        },
                    }, "a page of repositories"),
                    **error_responses(400),
                },
            },
            "post": {
                "summary": "create a repository (and a distribution of the same base path)",
                "operationId": "createRepository",
                "requestBody": json_body({
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "retain_versions": {"type": ["integer", "null"], "minimum": 1},
                        "distribute": {"type": "boolean"},
                    },
                }),
                "responses": {"201": json_response(ref("Repository"), "created"),
                              **error_responses(400, 409, 413)},
            },
        },
        "/api/v1/repositories/{name}": {
            "parameters": [name],
            "get": {
                "summary": "a repository: latest version, sizes, counts",
                "operationId": "showRepository",
                "responses": {"200": json_response(ref("Repository"), "the repository"),
                              **error_responses(400, 404)},
            },
            "patch": {
                "summary": "set how many versions to keep",
                "operationId": "updateRepository",
                "requestBody": json_body({
                    "type": "object",
                    "required": ["retain_versions"],
                    "properties": {"retain_versions": {"type": ["integer", "null"],
                                                       "minimum": 1}},
                }),
                "responses": {"200": json_response(ref("Repository"), "the repository"),
                              **error_responses(400, 404, 413)},
            },
            "delete": {
                "summary": "delete a repository and its distributions; its content is orphaned",
                "operationId": "deleteRepository",
                "responses": {"204": {"description": "deleted"}, **error_responses(400, 404)},
            },
        },
        f"{versions}/": {
            "parameters": [name],
            "get": {
                "summary": "list a repository's versions, oldest first",
                "operationId": "listVersions",
                "responses": {
                    "200": json_response({
                        "type": "object",
                        "required": ["repository", "versions"],
                        "properties": {
                            "repository": {"type": "string"},
                            "versions": {"type": "array", "items": ref("Version")},
                        },
                    }, "the versions"),
                    **error_responses(400, 404),
                },
            },
        },
        f"{versions}/{{number}}": {
            "parameters": [name, number],
            "get": {
                "summary": "one version",
                "operationId": "showVersion",
                "responses": {"200": json_response(ref("Version"), "the version"),
                              **error_responses(400, 404)},
            },
            "delete": {
                "summary": "delete a version; its changes fold into the next",
                "operationId": "deleteVersion",
                "responses": {"204": {"description": "deleted"}, **error_responses(400, 404, 409)},
            },
        },
        f"{versions}/{{number}}/content": {
            "parameters": [name, number],
            "get": {
                "summary": "everything a version holds",
                "operationId": "versionContent",
                "responses": {
                    "200": json_response({
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
                    **error_responses(400, 404),
                },
            },
        },
        f"{versions}/{{number}}/content/{{kind}}": {
            "parameters": [
                name, number,
                path_param("kind", {"type": "string", "enum": ["tags", "manifests", "blobs"]},
                            "content kind"),
            ],
            "get": {
                "summary": "a version's content of one kind, a page at a time",
                "operationId": "versionContentPage",
                "parameters": [LIMIT_PARAM, query_param("after", {"type": "string"},
                                                    "the `next` of the previous page")],
                "responses": {
                    "200": json_response({
                        "type": "object",
                        "required": ["repository", "version", "kind", "items", "next"],
                        "properties": {
                            "repository": {"type": "string"},
                            "version": {"type": "integer"},
                            "kind": {"type": "string"},
                            "items": {"type": "array", "items": {
                                "type": "object",
                                "required": ["digest"],
                                "properties": {"name": {"type": "string"}, "digest": DIGEST},
                            }},
                            "next": {"type": ["string", "null"]},
                        },
                    }, "a page of content"),
                    **error_responses(400, 404),
                },
            },
        },
        f"{versions}/{{base}}/diff/{{target}}": {
            "parameters": [
                name,
                path_param("base", number["schema"], "the version to compare from"),
                path_param("target", number["schema"], "the version to compare to"),
            ],
            "get": {
                "summary": "what changed from one version to another",
                "operationId": "diffVersions",
                "responses": {
                    "200": json_response(ref("Diff"), "the changes"), **error_responses(400, 404)
                },
            },
        },
        "/api/v1/repositories/{name}/rollback": {
            "parameters": [name],
            "post": {
                "summary": "a new version whose content equals an older one's",
                "operationId": "rollback",
                "requestBody": json_body({
                    "type": "object", "required": ["version"],
                    "properties": {"version": {"type": "integer", "minimum": 0}},
                }),
                "responses": {
                    "201": json_response(ref("Change"), "a new version"),
                    "200": json_response(ref("Change"), "the latest version already holds that"),
                    **error_responses(400, 404, 409, 413),
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
                "requestBody": json_body({
                    "type": "object",
                    "properties": {
                        "add_tags": {"type": "object",
                                     "additionalProperties": {"type": "string"},
                                     "description": "new tag -> tag or digest in the source"},
                        "remove_tags": {"type": "array", "items": {"type": "string"}},
                        "add_manifests": {"type": "array", "items": DIGEST},
                        "remove_manifests": {"type": "array", "items": DIGEST},
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
                    "201": json_response(ref("Change"), "a new version"),
                    "200": json_response(ref("Change"), "nothing changed"),
                    **error_responses(400, 404, 409, 413),
                },
            },
        },
        "/api/v1/repositories/{name}/staging": {
            "parameters": [name],
            "get": {
                "summary": "what the staging version holds",
                "operationId": "showStaging",
                "responses": {
                    "200": json_response({
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
                                               "created": TIME},
                            }},
                            "uploads": {"type": "array", "items": {
                                "type": "object",
                                "required": ["uuid", "base_path", "created", "updated"],
                                "properties": {"uuid": {"type": "string"},
                                               "base_path": {"type": "string"},
                                               "created": TIME, "updated": TIME},
                            }},
                        },
                    }, "the staging version"),
                    **error_responses(400, 404),
                },
            },
            "delete": {
                "summary": "discard the staging version",
                "operationId": "discardStaging",
                "responses": {
                    "200": json_response({
                        "type": "object", "required": ["repository", "discarded"],
                        "properties": {"repository": {"type": "string"},
                                       "discarded": {"type": "integer"}},
                    }, "how many items were discarded"),
                    **error_responses(400, 404),
                },
            },
        },
    }
