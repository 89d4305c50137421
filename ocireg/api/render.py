"""Rendering a JSON response body, shared by the registry, management and token APIs."""

from __future__ import annotations

import json

from twisted.web.iweb import IRequest


def json_response(
    request: IRequest,
    document: object,
    status: int = 200,
    content_type: str = "application/json",
) -> bytes:
    """`document` as the body of `request`'s response, with its status and length set."""
    body = json.dumps(document).encode()
    request.setResponseCode(status)
    request.setHeader("Content-Type", content_type)
    request.setHeader("Content-Length", str(len(body)))
    return body
