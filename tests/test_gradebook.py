"""Shared gradebook engines: one engine per URL, the schema checked once, all undone after."""

from __future__ import annotations

import shutil
import sqlite3

import nbgrader.api as api
import pytest
import sqlalchemy
from sqlalchemy import event

from toeplitz_course.grader.gradebook import engines_shared, open_gradebook


def statements_of_an_open(url: str) -> list[str]:
    """The SQL a ``Gradebook(url)`` runs when opened (and closed) on the shared engine."""
    seen: list[str] = []
    engine = api.create_engine(url, echo=False, future=True)

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        open_gradebook(url).close()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def catalogue(statements: list[str]) -> list[str]:
    return [s for s in statements if "PRAGMA" in s or "sqlite_master" in s]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A gradebook with its schema (creating one runs `alembic`, seconds)."""
    db = tmp_path_factory.mktemp("template") / "gradebook.db"
    open_gradebook(f"sqlite:///{db}").close()
    return db


@pytest.fixture
def url(template, tmp_path):
    shutil.copy(template, tmp_path / "gradebook.db")
    return f"sqlite:///{tmp_path / 'gradebook.db'}"


def test_the_schema_is_checked_once_per_engine(url):
    with engines_shared():
        first = statements_of_an_open(url)
        second = statements_of_an_open(url)
        third = statements_of_an_open(url)
    assert catalogue(first)
    assert catalogue(second) == [] and catalogue(third) == []
    # Still a working gradebook: the course row is looked up on every open.
    assert any("course" in s for s in second)


def test_unshared_every_open_checks_the_schema(url):
    seen: list[str] = []
    real = api.create_engine

    def watched(*args, **kwargs):
        engine = real(*args, **kwargs)
        event.listen(engine, "before_cursor_execute", lambda c, cur, s, *a: seen.append(s))
        return engine

    api.create_engine = watched
    try:
        open_gradebook(url).close()
    finally:
        api.create_engine = real
    assert catalogue(seen)


def test_sharing_is_undone_and_a_replaced_database_is_used(template, url, tmp_path):
    original = (api.create_engine, api.inspect)
    db = tmp_path / "gradebook.db"
    with engines_shared():
        with engines_shared():  # nested: the inner block changes nothing
            open_gradebook(url).close()
        assert api.create_engine is not original[0]
        engine = api.create_engine(url, echo=False, future=True)
        assert api.create_engine(url, echo=False, future=True) is engine
    assert (api.create_engine, api.inspect) == original
    assert api.inspect is sqlalchemy.inspect
    assert "create_all" not in vars(api.Base.metadata)
    # A new file under the same name: a pooled connection kept from the first block would still
    # write to the old, unlinked one.
    db.unlink()
    shutil.copy(template, db)
    with engines_shared():
        with open_gradebook(url) as gb:
            gb.add_student("s01")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id FROM student").fetchall() == [("s01",)]
