"""The planner has statistics from the first cycle on: a store opened with rows and none gets them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from crmhub.sandbox.history import seed_history
from crmhub.store import migrate, open_store
from crmhub.store.maintenance import Statistics

CRMS = ("salesforce", "zendesk", "hubspot")


def test_a_sqlite_store_with_history_and_no_statistics_is_analysed_at_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url, migrate_schema=False)
    migrate.upgrade(store.engine)  # migrated, as before this change: no statistics
    seed_history(store.engine, 500, CRMS)
    with store.engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")) == 0
    store.close()

    store = open_store(url)
    with store.engine.connect() as connection:
        analysed = set(connection.scalars(text("SELECT DISTINCT tbl FROM sqlite_stat1")))
    store.close()
    assert {"ledger", "outbox", "identities", "mirror_identities", "threads", "replies"} <= analysed


@pytest.mark.postgres
def test_a_postgresql_store_is_analysed_after_migrations_and_after_bulk_changes(fresh_postgres_url: str) -> None:
    store = open_store(fresh_postgres_url)  # a new database: migrations create the tables, then ANALYZE
    never = text("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NULL AND last_autoanalyze IS NULL")
    with store.engine.connect() as connection:
        assert set(connection.scalars(never)) == set()
    seed_history(store.engine, 500, CRMS)
    store.close()

    store = open_store(fresh_postgres_url)  # rows changed past autovacuum's threshold: analysed at start
    with store.engine.connect() as connection:
        rows = connection.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'ledger'"))
    store.close()
    assert rows == 500


def test_optimize_runs_at_most_once_an_interval() -> None:
    statistics = Statistics(every=timedelta(hours=1))
    start = datetime(2026, 12, 6, 9, tzinfo=UTC)
    runs = [statistics.due(start + timedelta(minutes=m)) for m in (0, 30, 59, 60, 61, 119, 121)]
    assert runs == [True, False, False, True, False, False, True]
