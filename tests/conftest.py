"""Shared fixtures: emulators on free ports, reset between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crmhub.sandbox import EMULATORS, EmulatorServer, SandboxClock, emulator_class


@pytest.fixture(scope="session")
def sandbox_clock() -> SandboxClock:
    """One clock for every emulator of the test session (it only moves forward)."""
    return SandboxClock()


def _emulator_fixtures(api: str) -> tuple[object, object]:
    """`_<api>_server` (one per test session) and `<api>_sandbox` (that server, emptied for the test)."""

    @pytest.fixture(scope="session", name=f"_{api}_server")
    def server(sandbox_clock: SandboxClock) -> Iterator[EmulatorServer]:
        with EmulatorServer(emulator_class(api)(clock=sandbox_clock)) as running:
            yield running

    @pytest.fixture(name=f"{api}_sandbox")
    def sandbox(request: pytest.FixtureRequest) -> EmulatorServer:
        running: EmulatorServer = request.getfixturevalue(f"_{api}_server")
        running.emulator.reset()
        return running

    sandbox.__doc__ = f"The {api} emulator on a free port, empty at the start of the test."
    return server, sandbox


# salesforce_sandbox, zendesk_sandbox, hubspot_sandbox, twilio_sandbox, x_sandbox, meta_sandbox, mail_sandbox
for _api in EMULATORS:
    globals()[f"_{_api}_server"], globals()[f"{_api}_sandbox"] = _emulator_fixtures(_api)


# ---- state stores: SQLite always, PostgreSQL where the local server runs -----

from sqlalchemy import text  # noqa: E402

from crmhub.sandbox.postgres import PostgresAbsent, throwaway_database  # noqa: E402
from crmhub.store import StateStore, open_store  # noqa: E402
from crmhub.store.schema import Base  # noqa: E402


def _throwaway_database() -> Iterator[str]:
    """A PostgreSQL database for the test (dropped afterwards), or a skip saying why the server is absent."""
    try:
        with throwaway_database("crmhub_test") as url:
            yield url
    except PostgresAbsent as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test session, or a skip saying why."""
    yield from _throwaway_database()


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A PostgreSQL database of its own for one test (e.g. for daemons in other processes), dropped after."""
    yield from _throwaway_database()


@pytest.fixture(scope="session")
def _postgres_store(postgres_url: str) -> Iterator[StateStore]:
    store = open_store(postgres_url)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[StateStore]:
    """An empty, migrated state store: a SQLite file, then the local PostgreSQL."""
    if request.param == "sqlite":
        sqlite_store = open_store(f"sqlite:///{tmp_path}/state.db")
        yield sqlite_store
        sqlite_store.close()
        return
    pg_store: StateStore = request.getfixturevalue("_postgres_store")
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with pg_store.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield pg_store
