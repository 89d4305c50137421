"""How the PostgreSQL store fails: at start-up, and while it serves."""

from __future__ import annotations

from ocireg.errors import UNAVAILABLE, RegistryError


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached at start-up; the message says where and why."""


def unavailable() -> RegistryError:
    """What a transaction fails with when it finds no live connection, or loses its own."""
    return RegistryError(UNAVAILABLE, "the metadata database is unavailable; try again shortly")
