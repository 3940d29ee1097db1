"""Schema migrations, run by crmhub itself at start (Alembic, programmatic).

`upgrade(engine)` brings any database to the newest revision; it is safe to
run at every start and from several processes at once: on PostgreSQL it
first takes a transaction-level advisory lock, so one process migrates while
the others wait, then find the schema at the newest revision and do nothing.
(Alembic itself locks nothing before it reads the current revision: two
daemons started together on a new database both ran `CREATE TABLE
alembic_version`, and the second one crashed.)
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from crmhub.store.locks import one_at_a_time

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to `revision` on `engine`'s database."""
    config = alembic_config()
    with engine.begin() as connection:
        one_at_a_time(connection, "migrate")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


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
