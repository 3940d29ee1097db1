"""Opening the state store: engine, dialect settings, migrations.

SQLite is the default (one file, nothing to install); PostgreSQL is for
production and for several daemons sharing one store. `open_store` migrates
the schema to the newest revision before anything else touches it, then
gives the planner statistics (`crmhub.store.maintenance`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from crmhub.store import maintenance, migrate


@dataclass
class StateStore:
    """The engine and session factory of one state store."""

    engine: Engine
    sessions: sessionmaker[Session]
    statistics: maintenance.Statistics = field(default_factory=maintenance.Statistics)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    def keep_statistics(self, now: datetime) -> None:
        """Refresh the planner's statistics where they went stale, at most every `OPTIMIZE_EVERY` (cheap)."""
        if self.statistics.due(now):
            maintenance.optimize(self.engine)

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str, *, migrate_schema: bool = True) -> StateStore:
    """Connect to `url` and bring its schema up to date."""
    engine = create_engine(url, **_engine_options(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate_schema:
        migrate.upgrade(engine)
        maintenance.at_start(engine)
    return StateStore(engine, sessionmaker(engine, expire_on_commit=False))


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # One writer at a time; wait for the lock instead of failing at once.
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
    cursor.close()
