"""A PostgreSQL store survives connections lost while they sat in its pool, without a ping per transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from crmhub.store import db, open_store

pytestmark = pytest.mark.postgres


def _backend(store: db.StateStore) -> int:
    with store.transaction() as session:
        return int(session.scalar(text("SELECT pg_backend_pid()")) or 0)


def _terminate(url: str, pid: int) -> None:
    """What a server restart or an administrator does to a connection, from another connection."""
    other = create_engine(url)
    try:
        with other.begin() as connection:
            assert connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        other.dispose()


def test_a_connection_lost_while_idle_is_replaced_on_checkout(fresh_postgres_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(fresh_postgres_url)
    try:
        lost = _backend(store)
        _terminate(fresh_postgres_url, lost)
        monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)  # as if it had sat in the pool a while

        assert _backend(store) != lost  # pinged, found dead, replaced: the transaction itself never failed
    finally:
        store.close()


def test_a_connection_lost_right_after_use_fails_one_transaction_and_the_next_reconnects(
        fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 3600.0)  # however slow the machine, it counts as just used
    store = open_store(fresh_postgres_url)
    try:
        lost = _backend(store)
        _terminate(fresh_postgres_url, lost)  # not pinged: it was in use a moment ago

        with pytest.raises(OperationalError):
            _backend(store)
        assert _backend(store) != lost
    finally:
        store.close()
