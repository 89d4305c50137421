"""PostgreSQL databases for tests: a fresh one per test, or an emptied one from a pool.

The server is the one at 127.0.0.1:5432 (trust auth, user postgres), or the
one `OCIREG_TEST_POSTGRES_DSN` names (a URL to a database we may CREATE
DATABASE from). `OCIREG_TEST_BACKENDS=sqlite` leaves PostgreSQL out, for a
machine without it; CI runs both, and an unreachable server fails the tests
rather than skipping them.

Creating, migrating and dropping a database costs about half a second, and
the registry tests run on PostgreSQL some 450 times: `DatabasePool` hands
them migrated databases it empties after each test instead (a few
milliseconds), and drops any whose schema a test changed. A test that needs
a database with no schema at all (to migrate, or to lay out an old schema)
takes a fresh `TestDatabase`.
"""

from __future__ import annotations

import os
import uuid

import attrs
import psycopg2
import psycopg2.extensions
from twisted.internet.defer import Deferred, succeed

from ocireg.db.migrations import migrate

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

    def _admin(self, statement: str, params: tuple = ()) -> list[tuple]:
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
                cursor.execute(statement, params)
                return cursor.fetchall() if cursor.description else []
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
        return self._admin(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.name,),
        )[0][0]

    def exists(self) -> bool:
        return bool(self._admin("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)))

    def connections(self) -> int:
        """How many server connections to this database are open."""
        return self._admin(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.name,)
        )[0][0]

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of `sql` run in this database, to check what ocireg stored."""
        connection = psycopg2.connect(self.dsn, connect_timeout=10)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()


#: What a test may change in a database's schema, as one text: relations and
#: their columns, indexes, constraints, sequences, triggers, functions, schemas
#: and the schema version. Two databases with the same text hold the same schema.
_SCHEMA = """
SELECT string_agg(item, E'\\n' ORDER BY item) FROM (
    SELECT 'column ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(a.attname, '')
           || ' ' || coalesce(format_type(a.atttypid, a.atttypmod), '')
           || ' ' || coalesce(a.attnotnull::text, '') || ' ' || coalesce(a.attidentity::text, '')
           || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS item
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND left(n.nspname, 8) <> 'pg_toast'
    UNION ALL
    SELECT 'index ' || schemaname || ' ' || indexdef FROM pg_indexes
    WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
    UNION ALL
    SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' '
           || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace IN (
        SELECT oid FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema'))
    UNION ALL
    SELECT 'trigger ' || tgrelid::regclass::text || ' ' || tgname FROM pg_trigger
    WHERE NOT tgisinternal
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    UNION ALL
    SELECT 'schema ' || nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND left(nspname, 3) <> 'pg_'
    UNION ALL
    SELECT 'version ' || version FROM schema_version
) AS items
"""


class _BlockingTransaction:
    """Enough of ocireg's `ITransaction` for its migrations, on a blocking cursor.

    Every answer is a Deferred that has already fired, so the migration runs
    to its end within `migrated`, with no reactor: pool databases are made
    from fixtures and test bodies alike.
    """

    for_update = " FOR UPDATE"

    def __init__(self, cursor) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: tuple = ()) -> Deferred:
        if params:
            # Only the schema version's own statements have parameters, and
            # no `?` or `%` but their placeholders.
            self._cursor.execute(sql.replace("?", "%s"), params)
        else:
            # Without parameters psycopg2 reads no placeholder: the SQL goes as written.
            self._cursor.execute(sql)
        return succeed(self._cursor.fetchall() if self._cursor.description else [])


def migrated(db: TestDatabase) -> TestDatabase:
    """`db` brought to ocireg's newest schema by ocireg's own migrations, in one transaction."""
    connection = psycopg2.connect(db.dsn, connect_timeout=10)
    try:
        with connection, connection.cursor() as cursor:
            done = Deferred.fromCoroutine(migrate(_BlockingTransaction(cursor), "postgresql"))
            failures: list = []
            done.addErrback(failures.append)
            if failures:
                failures[0].raiseException()
    finally:
        connection.close()
    return db


@attrs.define
class DatabasePool:
    """Migrated, empty databases for registry tests: emptied after each test and used again.

    The schema of the first database it migrates is the reference: a
    database given back with another schema (a test changed it) is dropped,
    never handed out again.
    """

    _free: list[TestDatabase] = attrs.field(factory=list)
    _reference: str | None = None

    def take(self) -> TestDatabase:
        """A migrated database with no rows and no connection, the test's until given back."""
        while self._free:
            db = self._free.pop()
            # A process the test left running could have reconnected since.
            if db.connections() == 0:
                return db
            db.drop()
        db = TestDatabase().create()
        try:
            schema = _schema(migrated(db))
        except BaseException:
            db.drop()
            raise
        if self._reference is None:
            self._reference = schema
        elif schema != self._reference:
            db.drop()
            raise AssertionError(f"migrating {db.name} gave another schema than before:\n{schema}")
        return db

    def give_back(self, db: TestDatabase) -> None:
        """Empty `db` for the next test; drop it instead if its schema is not ocireg's."""
        db.terminate_connections()
        try:
            if _schema(db) == self._reference:
                _empty(db)
                self._free.append(db)
                return
        except psycopg2.Error:
            pass
        db.drop()

    def close(self) -> None:
        while self._free:
            self._free.pop().drop()


def _schema(db: TestDatabase) -> str:
    return db.query(_SCHEMA)[0][0]


def _empty(db: TestDatabase) -> None:
    """Delete every row but the schema version, and restart the sequences.

    DELETE, not TRUNCATE: on tables this small it is a hundred times cheaper.
    """
    connection = psycopg2.connect(db.dsn, connect_timeout=10)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'schema_version'"
            )
            tables = [row[0] for row in cursor.fetchall()]
            cursor.execute(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) "
                "FROM pg_sequences WHERE schemaname = 'public'"
            )
            sequences = [row[0] for row in cursor.fetchall()]
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")
            for sequence in sequences:
                cursor.execute(f"ALTER SEQUENCE {sequence} RESTART")
    finally:
        connection.close()
