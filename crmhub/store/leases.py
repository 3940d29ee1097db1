"""Streams owned by one daemon at a time: PostgreSQL session advisory locks.

Every periodic reader (a channel poll stream, a CRM's contact mirror, its
case states, its agents' replies, the reply delivery statuses) is a stream.
Several daemons on one store must not all read it: that multiplies the
calls for nothing (the ledger keeps each item once anyway). A daemon reads a
stream only while it holds the stream's lease, a session advisory lock
(`pg_try_advisory_lock`) on a connection of its own that it keeps for its
whole life. The lock lives as long as that session: a daemon that stops or
dies (SIGKILL, a lost host) ends it, PostgreSQL frees the lock, and the
next daemon to try takes the stream over on its next run. No lease table to
expire, no clock to trust.

Before each run the holder checks its session is alive (one `SELECT 1`): a
session the server dropped took its locks with it, and the stream may
already be another daemon's. The leases are keyed in their own advisory
key space (two int keys, the first `NAMESPACE`), apart from the
transaction locks of `crmhub.store.locks`.

On SQLite (one daemon per file) every lease is held.
"""

from __future__ import annotations

import os
import socket
import threading
import zlib
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import Connection, Engine, create_engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from crmhub.store.db import StateStore

log = structlog.get_logger("crmhub.leases")

NAMESPACE = zlib.crc32(b"crmhub:stream") & 0x7FFFFFFF
APPLICATION_PREFIX = "crmhub "  # application_name of a lease session: "crmhub <host>:<pid>"


def stream_key(stream: str) -> int:
    """The lease's second key: stable across processes and hosts (not Python's salted hash)."""
    return zlib.crc32(stream.encode()) & 0x7FFFFFFF


def daemon_name() -> str:
    """This process as ops and `crmhub status` name it: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class StreamLeases:
    """The streams this process may read now; one session of its own holds their locks.

    Args:
        store: the state store (a lease is always held on SQLite).
        owner: how this process is named in `pg_stat_activity` and `crmhub status`.
    """

    def __init__(self, store: StateStore, owner: str | None = None) -> None:
        self.shared = store.dialect == "postgresql"
        self.owner = owner or daemon_name()
        self._url = store.engine.url
        self._engine: Engine | None = None
        self._connection: Connection | None = None
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def holds(self, stream: str) -> bool:
        """Whether this process owns `stream` now: held already (its session alive), or taken just now."""
        if not self.shared:
            return True
        with self._lock:
            try:
                connection = self._open()
                if stream in self._held:
                    connection.execute(text("SELECT 1"))  # the session lives, so its locks do
                    return True
                if connection.execute(select(func.pg_try_advisory_lock(NAMESPACE, stream_key(stream)))).scalar():
                    self._held.add(stream)
                    log.info("stream taken", stream=stream, owner=self.owner)
                    return True
                return False
            except DBAPIError as exc:
                if self._held:
                    log.warning("lost the session holding stream leases; another daemon may read them now",
                                streams=sorted(self._held), error=type(exc).__name__)
                self._drop()
                return False

    def held(self) -> set[str]:
        """The streams this process holds (as far as it knows)."""
        with self._lock:
            return set(self._held) if self.shared else set()

    def close(self) -> None:
        """Give every lease back at once (ending the session), so another daemon takes over on its next run."""
        with self._lock:
            self._drop()
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def _open(self) -> Connection:
        if self._connection is None:
            if self._engine is None:
                # A connection outside the pool: its session must end when it is closed, locks and all.
                self._engine = create_engine(self._url, poolclass=NullPool, connect_args={
                    "application_name": (APPLICATION_PREFIX + self.owner)[:63]})
            self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    def _drop(self) -> None:
        self._held.clear()
        if self._connection is not None:
            try:
                self._connection.close()
            except DBAPIError:
                pass
            self._connection = None


@dataclass(frozen=True)
class Owner:
    """Who holds a stream's lease: the daemon's name and since when its session runs."""

    daemon: str
    since: datetime


def stream_owners(store: StateStore, streams: list[str]) -> dict[str, Owner | None]:
    """The holder of each of `streams` (None: nobody holds it now); every stream unowned off PostgreSQL."""
    if store.dialect != "postgresql":
        return dict.fromkeys(streams)
    keys = {stream_key(stream): stream for stream in streams}
    query = text("SELECT l.objid::bigint AS key, a.application_name, a.backend_start FROM pg_locks l "
                 "JOIN pg_stat_activity a ON a.pid = l.pid "
                 "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid::bigint = :ns "
                 "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")
    owners: dict[str, Owner | None] = dict.fromkeys(streams)
    with store.engine.connect() as connection:
        for key, application, started in connection.execute(query, {"ns": NAMESPACE}):
            if key in keys:
                name = application[len(APPLICATION_PREFIX):] if application.startswith(APPLICATION_PREFIX) else \
                    application or "?"
                owners[keys[key]] = Owner(name, started)
    return owners
