"""Schema migrations, run by crmhub itself at start (Alembic, programmatic).

`upgrade(engine)` brings any database to the newest revision; it is safe to
run at every start and from several processes at once: on PostgreSQL it
first takes a transaction-level advisory lock, so one process migrates while
the others wait, then find the schema at the newest revision and do nothing.
(Alembic itself locks nothing before it reads the current revision: two
daemons started together on a new database both ran `CREATE TABLE
alembic_version`, and the second one crashed.)

An upgrade is one transaction: every migration it applies and the
alembic_version row that records them commit together or not at all, so a
daemon killed mid-migration leaves the schema at the revision it started
from, and the next start simply migrates again (issue 13). PostgreSQL's DDL
is transactional as it comes; SQLite's is too, but Python's sqlite3 driver
runs a CREATE TABLE outside any transaction unless one was begun
explicitly, so on SQLite the upgrade begins its own (`_one_transaction`).
A store such a kill left half-created before this was fixed is cleared and
created again at its next start (`_clear_a_half_created_first_schema`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, inspect, select, table, text

from crmhub.store.locks import one_at_a_time

MIGRATIONS = Path(__file__).parent / "migrations"
# The tables migration 0001 creates, in its order (a table before those that refer to it).
FIRST_TABLES = ("cursors", "dead_letters", "mirror", "persons", "threads", "crm_links", "identities", "ledger",
                "mirror_identities", "outbox", "route_decisions")

log = structlog.get_logger("crmhub.store")


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to `revision` on `engine`'s database."""
    config = alembic_config()
    with _one_transaction(engine) as connection:
        one_at_a_time(connection, "migrate")
        _clear_a_half_created_first_schema(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _clear_a_half_created_first_schema(connection: Connection) -> None:
    """Drop what a first start killed before the fix of issue 13 left, so that the upgrade creates it whole.

    Such a store holds an empty alembic_version (Alembic creates it before
    0001 runs) and some of 0001's tables, and failed every later start on
    "table cursors already exists". Only that is dropped: every other table
    one of 0001's, and every one of them empty, so nothing is lost. Anything
    else is left to Alembic as it is.
    """
    tables = set(inspect(connection).get_table_names())
    leftovers = tables - {"alembic_version"}
    if "alembic_version" not in tables or not leftovers or not leftovers <= set(FIRST_TABLES):
        return
    if connection.scalar(select(func.count()).select_from(table("alembic_version"))):
        return
    if any(connection.scalar(select(func.count()).select_from(table(name))) for name in leftovers):
        return
    for name in reversed(FIRST_TABLES):  # those that refer to others first
        if name in leftovers:
            connection.execute(text(f"DROP TABLE {name}"))  # a name from FIRST_TABLES, never from the database
    log.warning("cleared a half-created schema that an interrupted first start left; creating it again",
                tables=sorted(leftovers))


@contextmanager
def _one_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds DDL too; committed when the block ends, rolled back on error.

    pysqlite (legacy transaction control, Python < 3.12's only mode) emits BEGIN
    only before INSERT, UPDATE or DELETE, so the migrations' CREATE TABLEs ran
    in autocommit: a kill during the first start left half the tables and no
    alembic_version row, and every later start failed on "table cursors
    already exists". On SQLite this turns the driver's own BEGIN off for the
    migration's connection and begins explicitly, as SQLAlchemy's pysqlite
    notes advise ("Serializable isolation / Savepoints / Transactional DDL");
    IMMEDIATE takes the write lock at once, so a second process waits (the
    engine's busy timeout) and then finds the schema migrated. The daemon's
    own transactions keep the driver's default.
    """
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            with connection.begin():
                yield connection
            return
        driver: Any = connection.connection.driver_connection
        legacy = driver.isolation_level
        driver.isolation_level = None  # no implicit BEGIN or COMMIT; none is open on a fresh checkout
        try:
            with connection.begin():
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                yield connection
        finally:
            driver.isolation_level = legacy  # back to the pool as the engine made it


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def autogenerate(engine: Engine, message: str) -> None:
    """Developer helper: write a new migration from the schema's differences."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
