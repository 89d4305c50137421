"""PostgreSQL databases for tests: a fresh one per test, dropped afterwards.

The server is the one at 127.0.0.1:5432 (trust auth, user postgres), or the
one `OCIREG_TEST_POSTGRES_DSN` names (a URL to a database we may CREATE
DATABASE from). `OCIREG_TEST_BACKENDS=sqlite` leaves PostgreSQL out, for a
machine without it; CI runs both, and an unreachable server fails the tests
rather than skipping them.
"""

from __future__ import annotations

import os
import uuid

import attrs
import psycopg2
import psycopg2.extensions

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_dsn() -> str:
    return os.environ.get("OCIREG_TEST_POSTGRES_DSN") or DEFAULT_DSN


def backends() -> list[str]:
    """The metadata backends the registry tests run on."""
    chosen = os.environ.get("OCIREG_TEST_BACKENDS", "sqlite,postgresql")
    return [b.strip() for b in chosen.split(",") if b.strip()]


def _url(parts: dict[str, str]) -> str:
    user = parts.get("user", "")
    password = f":{parts['password']}" if parts.get("password") else ""
    auth = f"{user}{password}@" if user else ""
    host = parts.get("host", "127.0.0.1")
    port = parts.get("port", "5432")
    return f"postgresql://{auth}{host}:{port}/{parts['dbname']}"


@attrs.define
class TestDatabase:
    """A database of its own on the test server, for one test."""

    __test__ = False

    name: str = attrs.field(factory=lambda: f"ocireg_test_{uuid.uuid4().hex[:16]}")

    @property
    def dsn(self) -> str:
        """The URL ocireg is given."""
        parts = psycopg2.extensions.parse_dsn(admin_dsn())
        parts["dbname"] = self.name
        return _url(parts)

    def _admin(self, statement: str) -> None:
        try:
            connection = psycopg2.connect(admin_dsn(), connect_timeout=10)
        except psycopg2.OperationalError as e:
            raise RuntimeError(
                f"the PostgreSQL tests need a server at {admin_dsn()} "
                f"(set OCIREG_TEST_POSTGRES_DSN, or OCIREG_TEST_BACKENDS=sqlite): {e}"
            ) from None
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    def create(self) -> TestDatabase:
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self

    def drop(self) -> None:
        # FORCE ends the connections ocireg may still hold.
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def terminate_connections(self) -> int:
        """End every server connection to this database; how many there were."""
        connection = psycopg2.connect(admin_dsn(), connect_timeout=10)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.name,),
                )
                return cursor.fetchone()[0]
        finally:
            connection.close()

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of `sql` run in this database, to check what ocireg stored."""
        connection = psycopg2.connect(self.dsn, connect_timeout=10)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()
