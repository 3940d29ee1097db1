"""A daemon killed while it creates or migrates the schema leaves nothing half-done (issue 13).

Each case kills a process at its N-th CREATE TABLE (tests/store/die_mid_migration.py), then starts the
real CLI on the same store: `crmhub status` must migrate it to the newest revision, and a sync must store
a message. Before the fix, SQLite kept the tables created so far without an alembic_version row, and
every later start failed with "table cursors already exists".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from crmhub.cli import app
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store import migrate, open_store
from crmhub.store.schema import LedgerRow
from tests.store.die_mid_migration import DIED

ROOT = Path(__file__).resolve().parents[2]
OURS = "+14155550100"
# The N-th CREATE TABLE of all migrations: 0001 creates 11 tables, 0002 the 12th (conflicts).
KILLED_AT = {"first table of 0001": 1, "middle of 0001": 6, "last table of 0001": 11, "inside 0002": 12}


def _die_at(url: str, nth: int) -> None:
    died = subprocess.run([sys.executable, "-m", "tests.store.die_mid_migration", url, str(nth)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert died.returncode == DIED, f"the kill did not land at CREATE TABLE #{nth}: {died.stderr[-2000:]}"


def _starts_and_works(url: str, tmp_path: Path, salesforce: EmulatorServer, twilio: EmulatorServer) -> None:
    settings = write_sandbox_settings(tmp_path / "conf", {"salesforce": salesforce.url, "twilio": twilio.url},
                                      state_url=url)
    status = subprocess.run([sys.executable, "-m", "crmhub", "status", "--config", str(settings)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr[-2000:]
    store = open_store(url, migrate_schema=False)
    try:
        assert migrate.current_revision(store.engine) == migrate.head_revision()
        sf: Any = salesforce.emulator
        for queue in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
            sf.add_queue(queue.replace("_", " "), queue)
        tw: Any = twilio.emulator
        tw.add_number(OURS)
        tw.receive_message("+14155550125", OURS, "Do you ship to Canada?")
        synced = CliRunner().invoke(app, ["sync", "--config", str(settings)])
        assert synced.exit_code == 0, synced.output
        with store.transaction() as session:
            assert session.scalar(select(func.count()).select_from(LedgerRow)) == 1
    finally:
        store.close()


@pytest.mark.parametrize("nth", KILLED_AT.values(), ids=KILLED_AT.keys())
def test_a_kill_while_sqlite_is_migrated_leaves_a_store_the_next_start_migrates(
        nth: int, tmp_path: Path, salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _die_at(url, nth)
    _starts_and_works(url, tmp_path, salesforce_sandbox, twilio_sandbox)


@pytest.mark.postgres
@pytest.mark.parametrize("nth", KILLED_AT.values(), ids=KILLED_AT.keys())
def test_a_kill_while_postgresql_is_migrated_leaves_a_store_the_next_start_migrates(
        nth: int, fresh_postgres_url: str, tmp_path: Path, salesforce_sandbox: EmulatorServer,
        twilio_sandbox: EmulatorServer) -> None:
    _die_at(fresh_postgres_url, nth)
    _starts_and_works(fresh_postgres_url, tmp_path, salesforce_sandbox, twilio_sandbox)


def _half_created_before_the_fix(url: str, kept: int) -> None:
    """The store a kill during the first start left before the fix: 0001's first `kept` tables, no revision."""
    store = open_store(url, migrate_schema=False)
    try:
        migrate.upgrade(store.engine, "0001")
        with store.engine.begin() as connection:
            connection.execute(text("DELETE FROM alembic_version"))
            for name in reversed(migrate.FIRST_TABLES[kept:]):
                connection.execute(text(f"DROP TABLE {name}"))
    finally:
        store.close()


@pytest.mark.parametrize("kept", [1, 6, 11])
def test_a_sqlite_store_left_half_created_before_the_fix_is_created_again_at_the_next_start(
        kept: int, tmp_path: Path, salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _half_created_before_the_fix(url, kept)
    _starts_and_works(url, tmp_path, salesforce_sandbox, twilio_sandbox)


def test_a_half_created_store_that_holds_a_row_is_not_dropped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _half_created_before_the_fix(url, 6)
    store = open_store(url, migrate_schema=False)
    try:
        with store.engine.begin() as connection:
            connection.execute(text("INSERT INTO cursors VALUES ('sms', 'messages', '', 'x', '2026-01-01')"))
        with pytest.raises(OperationalError, match="table cursors already exists"):
            migrate.upgrade(store.engine)
        with store.engine.connect() as connection:
            assert connection.scalar(text("SELECT value FROM cursors")) == "x"
    finally:
        store.close()
