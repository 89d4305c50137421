"""Fixtures of the end-to-end tests with real clients (skopeo, podman, docker).

The registry under test comes from the `registry` fixture (function scope,
defined in tests/conftest.py for ocireg): a fresh registry with empty storage
per test, with `.host` ("127.0.0.1:PORT") and `.url` ("http://127.0.0.1:PORT").
With OCIREG_E2E_AGAINST_REFERENCE=1 the reference registry (distribution 2.8,
tests/e2e/_reference_registry.py) serves instead, and the tests marked
`reference_differs` are expected to fail there (strict xfail).
"""

from __future__ import annotations

import os

import pytest

from .clients import Docker, DockerDaemon, Podman, Skopeo

AGAINST_REFERENCE = os.environ.get("OCIREG_E2E_AGAINST_REFERENCE") == "1"

if AGAINST_REFERENCE:
    from ._reference_registry import registry  # noqa: F401  (overrides tests/conftest.py's)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "e2e: end-to-end test with real clients (skopeo, podman, docker)"
    )
    config.addinivalue_line(
        "markers",
        "reference_differs(reason): the reference registry (distribution 2.8) is known "
        "not to do this; strict xfail when OCIREG_E2E_AGAINST_REFERENCE=1",
    )


def pytest_collection_modifyitems(config, items):
    if not AGAINST_REFERENCE:
        return
    for item in items:
        marker = item.get_closest_marker("reference_differs")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.xfail(reason=f"reference registry: {reason}", strict=True))


@pytest.fixture
def skopeo(tmp_path):
    return Skopeo(tmp_path / "skopeo")


@pytest.fixture
def podman(tmp_path):
    client = Podman(tmp_path / "podman")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def dockerd():
    """One private dockerd for the whole session (see clients.DockerDaemon)."""
    daemon = DockerDaemon()
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def docker(dockerd, tmp_path, skopeo):
    return Docker(dockerd, tmp_path / "docker", skopeo=skopeo)
