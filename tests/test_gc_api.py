"""Garbage collection and scrub through the management API."""

from __future__ import annotations

import pytest_twisted

from ocireg.digest import Digest
from tests.api_helpers import push_blob


@pytest_twisted.ensureDeferred
async def test_dry_run_collection_reports_and_is_listed(server):
    await push_blob(server, "team/app")

    response = await server.request("POST", "/api/v1/gc", json={"dry_run": True})
    assert response.code == 200
    report = await response.json()
    assert report["dry_run"] is True
    # A blob staged a moment ago is neither unreferenced nor past the grace period.
    assert (report["blobs"], report["bytes"]) == (0, 0)

    runs = await (await server.request("GET", "/api/v1/gc")).json()
    assert [r["dry_run"] for r in runs["runs"]] == [True]


@pytest_twisted.ensureDeferred
async def test_collection_refuses_a_dry_run_that_is_not_a_boolean(server):
    response = await server.request("POST", "/api/v1/gc", json={"dry_run": "yes"})
    assert response.code == 400
    assert (await response.json())["error"]["field"] == "dry_run"


@pytest_twisted.ensureDeferred
async def test_scrub_reports_a_blob_whose_bytes_are_gone(server):
    digest = await push_blob(server, "team/app")
    await server.registry.blobs.delete_blob(Digest.parse(digest))

    response = await server.request("POST", "/api/v1/scrub")
    assert response.code == 200
    report = await response.json()
    assert report["missing"] == [digest]
    assert report["healthy"] is False


@pytest_twisted.ensureDeferred
async def test_metrics_count_collections_and_what_they_freed(server):
    await server.request("POST", "/api/v1/gc", json={"dry_run": True})
    await server.request("POST", "/api/v1/gc")

    text = (await (await server.request("GET", "/metrics")).content()).decode()

    assert "ocireg_gc_runs_total 2.0" in text
    assert "ocireg_gc_freed_bytes_total 0.0" in text
    assert "ocireg_uploads_purged_total 0.0" in text
