"""The management API keeps to its OpenAPI document: schemathesis generates
requests from /api/v1/openapi.json's document (valid and invalid ones) and
checks that no answer is a 500 and that every status, content type and body
is one the document declares."""

from __future__ import annotations

import hashlib
import json
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from ocireg.api.openapi import document
from tests.support import RegistryProcess

schema = schemathesis.openapi.from_dict(document())

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def _send(url: str, method: str, data: bytes = b"", content_type: str | None = None) -> None:
    request = urllib.request.Request(url, data=data, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status in (201, 202), response.status


def _seed(url: str) -> None:
    """Repository `library` (the document's example name) with two versions."""
    for tag in ("1", "2"):
        config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
        digest = "sha256:" + hashlib.sha256(config).hexdigest()
        _send(f"{url}/v2/library/blobs/uploads/?digest={digest}", "POST", config,
              "application/octet-stream")
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest, "size": len(config)},
            "layers": [],
        }).encode()
        _send(f"{url}/v2/library/manifests/{tag}", "PUT", manifest,
              "application/vnd.oci.image.manifest.v1+json")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One registry process for every operation's examples (SQLite), seeded, then stopped."""
    server = RegistryProcess(tmp_path_factory.mktemp("fuzz") / "ocireg-data").start()
    try:
        _seed(server.url)
        yield server
    finally:
        server.stop()


def test_the_served_document_is_the_one_fuzzed(live):
    with urllib.request.urlopen(f"{live.url}/api/v1/openapi.json", timeout=30) as response:
        assert json.loads(response.read()) == document()


@schema.parametrize()
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_management_api_conforms_to_its_openapi_document(case, live):
    response = case.call(base_url=live.url, timeout=30)
    case.validate_response(response, checks=CHECKS)
