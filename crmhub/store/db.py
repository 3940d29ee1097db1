"""Opening the state store: engine, dialect settings, migrations.

SQLite is the default (one file, nothing to install); PostgreSQL is for
production and for several daemons sharing one store. `open_store` migrates
the schema to the newest revision before anything else touches it, then
gives the planner statistics (`crmhub.store.maintenance`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from crmhub.errors import CrmhubError
from crmhub.store import arrays, maintenance, migrate

# Seconds a pooled server connection may sit unused before it is pinged on checkout (see `_ping_after_idle`).
PING_AFTER_IDLE = 1.0


class StoreMissing(CrmhubError):
    """A command that only reads or changes a state store found none where the settings point."""


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


def open_store(url: str, *, migrate_schema: bool = True, create: bool = True) -> StateStore:
    """Connect to `url` and bring its schema up to date.

    A new SQLite file is created readable by its owner only (it holds message
    text); with `create=False` (ops commands) a missing file is an error, never
    a new empty store.

    Raises:
        StoreMissing: `create` is False and the SQLite file does not exist.
    """
    path = sqlite_file(url)
    if path is not None and not path.exists():
        if not create:
            raise StoreMissing(f"no state store at {path}: `crmhub run` or `crmhub sync` creates it; check --config, "
                               "CRMHUB_CONFIG or state.url")
        _create_private(path)
    engine = create_engine(url, **_engine_options(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        _ping_after_idle(engine)
    if engine.dialect.driver == "psycopg":
        event.listen(engine, "connect", arrays.use_array_dumper)
    if migrate_schema:
        migrate.upgrade(engine)
        maintenance.at_start(engine)
    return StateStore(engine, sessionmaker(engine, expire_on_commit=False))


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _create_private(path: Path) -> None:
    """An empty file, mode 0600 whatever the umask; SQLite gives its -wal and -shm files the same mode.

    A missing directory is left for SQLite to report: crmhub creates no directories behind the admin's back.
    """
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except (FileExistsError, FileNotFoundError):  # made meanwhile by another process; or no such directory
        pass


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # One writer at a time; wait for the lock instead of failing at once.
        return {"connect_args": {"timeout": 30}}
    return {}


def _ping_after_idle(engine: Engine) -> None:
    """Ping a pooled connection on checkout only when it sat unused `PING_AFTER_IDLE` seconds or more.

    `pool_pre_ping` would add a `SELECT 1` round trip to every transaction (a warm cycle runs
    hundreds; issue 13). Connections go stale while they sit in the pool (a server restart, an idle
    timeout, a terminated backend), and a restart takes longer than `PING_AFTER_IDLE`, so a connection
    back in use within that time was alive a moment ago. One that breaks in the meantime fails its
    transaction, as it would have mid-transaction with `pool_pre_ping`, and SQLAlchemy's disconnect
    handling then drops it and every connection of the pool opened before, so the next transaction
    reconnects. A failed ping raises `DisconnectionError`, on which the pool reconnects and goes on.
    """
    dialect = engine.dialect

    def returned(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["crmhub_idle_since"] = time.monotonic()

    def taken(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        since = record.info.get("crmhub_idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            raise DisconnectionError("a pooled connection to the state store was lost while idle; reconnecting") \
                from error

    event.listen(engine, "checkin", returned)
    event.listen(engine, "checkout", taken)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
    cursor.close()
