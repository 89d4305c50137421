"""The OpenAPI document's components: the management API's values and error responses."""

from __future__ import annotations

from ocireg.api.openapi.builders import DIGEST, NULLABLE_INT, TIME, json_response, ref

SCHEMAS: dict = {
    "Collection": {
        "type": "object",
        "required": ["started", "duration", "dry_run", "manifests", "blobs", "bytes",
                     "stray_files"],
        "properties": {
            "started": TIME,
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
            "missing": {"type": "array", "items": DIGEST},
            "corrupt": {"type": "array", "items": DIGEST},
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
            "created": TIME,
            "retain_versions": NULLABLE_INT,
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
            "base_version": NULLABLE_INT,
            "reason": {"type": "string"},
            "created": TIME,
            "added": ref("Counts"),
            "removed": ref("Counts"),
            "present": ref("Counts"),
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
            "manifests": ref("Added"),
            "blobs": ref("Added"),
        },
    },
    "Distribution": {
        "type": "object",
        "required": ["base_path", "repository", "version", "serves", "created"],
        "properties": {
            "base_path": {"type": "string"},
            "repository": {"type": "string"},
            "version": {**NULLABLE_INT, "description": "the pinned version; null: the latest"},
            "serves": {"type": "integer", "description": "the version a pull serves now"},
            "created": TIME,
        },
    },
}

RESPONSES = {
    f"E{status}": json_response(ref("Error"), text)
    for status, text in {
        400: "bad input; `field` names the offending field",
        404: "no such repository, version, distribution or content",
        409: "conflicts with the current state",
        413: "body too large",
    }.items()
}
