"""The PostgreSQL test databases: a pooled one comes back empty, a changed one never comes back."""

from __future__ import annotations

import psycopg2
import pytest

from tests.databases import backends

pytestmark = pytest.mark.skipif(
    "postgresql" not in backends(), reason="OCIREG_TEST_BACKENDS leaves PostgreSQL out"
)


def test_a_database_given_back_comes_back_with_no_rows_and_restarted_sequences(database_pool):
    db = database_pool.take()
    db.query("INSERT INTO repositories (name, created) VALUES ('team/app', 0); COMMIT")
    db.query("INSERT INTO blobs (digest, size, created) VALUES ('sha256:00', 1, 0); COMMIT")
    database_pool.give_back(db)

    again = database_pool.take()
    try:
        assert again.name == db.name
        assert again.query("SELECT count(*) FROM repositories") == [(0,)]
        assert again.query("SELECT count(*) FROM blobs") == [(0,)]
        again.query("INSERT INTO repositories (name, created) VALUES ('team/app', 0); COMMIT")
        assert again.query("SELECT id FROM repositories") == [(1,)]
    finally:
        database_pool.give_back(again)


def test_a_database_whose_schema_a_test_changed_is_dropped(database_pool):
    db = database_pool.take()
    db.query("ALTER TABLE uploads DROP COLUMN owner; COMMIT")
    database_pool.give_back(db)

    assert not db.exists()
    other = database_pool.take()
    try:
        assert other.name != db.name
        assert other.query("SELECT owner FROM uploads") == []
    finally:
        database_pool.give_back(other)


def test_a_database_still_connected_when_taken_is_not_handed_out(database_pool):
    db = database_pool.take()
    database_pool.give_back(db)
    lingering = psycopg2.connect(db.dsn, connect_timeout=10)
    try:
        taken = database_pool.take()
        try:
            assert taken.name != db.name
        finally:
            database_pool.give_back(taken)
    finally:
        lingering.close()
    assert not db.exists()
