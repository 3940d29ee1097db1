"""Work that several daemons on one PostgreSQL store must do one at a time.

Row locks (`FOR UPDATE SKIP LOCKED`) let daemons share rows; some work needs
more: a migration, or a claim that must see the claims made just before it.
Those take a transaction-level advisory lock, released when the transaction
ends, so a daemon killed while holding one holds it no longer.
"""

from __future__ import annotations

import zlib

from sqlalchemy import BigInteger, Connection, bindparam, func, select
from sqlalchemy.orm import Session

# Built once, the key bound at execution: a cycle takes the lock some thirty times (issue 13).
_LOCK = select(func.pg_advisory_xact_lock(bindparam("key", type_=BigInteger)))


def one_at_a_time(bind: Session | Connection, name: str) -> None:
    """Wait until no other process holds the lock `name`, then hold it until this transaction ends.

    For work several daemons on one PostgreSQL store must not do at once
    (`pg_advisory_xact_lock`, keyed by a hash of `name`). A no-op on SQLite,
    whose file runs one daemon.
    """
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    if dialect.name == "postgresql":
        key = zlib.crc32(f"crmhub:{name}".encode())  # fits PostgreSQL's bigint key, the same in every process
        bind.execute(_LOCK, {"key": key})
