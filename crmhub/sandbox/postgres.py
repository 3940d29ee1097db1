"""A throw-away database on the local PostgreSQL server, for the tests and the benchmarks.

One place for how it is made and dropped, so a test's or a bench's store
never outlives its run, even when a daemon it started still holds a
connection (`DROP ... WITH (FORCE)`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


class PostgresAbsent(RuntimeError):
    """No PostgreSQL server answers on 127.0.0.1:5432; the message says why."""


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """A new database `<prefix>_<random>`: its SQLAlchemy URL, dropped when the block ends.

    Raises:
        PostgresAbsent: the server cannot be reached (nothing was created).
    """
    import psycopg

    try:
        admin = psycopg.connect(ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        raise PostgresAbsent(f"PostgreSQL not reachable on 127.0.0.1:5432 ({str(exc).strip()[:120]})") from exc
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
