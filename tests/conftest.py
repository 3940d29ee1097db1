"""Shared fixtures: emulators on free ports, reset between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crmhub.sandbox import EmulatorServer, SandboxClock, emulator_class


@pytest.fixture(scope="session")
def sandbox_clock() -> SandboxClock:
    """One clock for every emulator of the test session (it only moves forward)."""
    return SandboxClock()


def _server(api: str, clock: SandboxClock) -> Iterator[EmulatorServer]:
    with EmulatorServer(emulator_class(api)(clock=clock)) as server:
        yield server


def _fresh(server: EmulatorServer) -> EmulatorServer:
    server.emulator.reset()
    return server


@pytest.fixture(scope="session")
def _salesforce_server(sandbox_clock: SandboxClock) -> Iterator[EmulatorServer]:
    yield from _server("salesforce", sandbox_clock)


@pytest.fixture(scope="session")
def _zendesk_server(sandbox_clock: SandboxClock) -> Iterator[EmulatorServer]:
    yield from _server("zendesk", sandbox_clock)


@pytest.fixture(scope="session")
def _hubspot_server(sandbox_clock: SandboxClock) -> Iterator[EmulatorServer]:
    yield from _server("hubspot", sandbox_clock)


@pytest.fixture(scope="session")
def _twilio_server(sandbox_clock: SandboxClock) -> Iterator[EmulatorServer]:
    yield from _server("twilio", sandbox_clock)


@pytest.fixture(scope="session")
def _x_server(sandbox_clock: SandboxClock) -> Iterator[EmulatorServer]:
    yield from _server("x", sandbox_clock)


@pytest.fixture
def salesforce_sandbox(_salesforce_server: EmulatorServer) -> EmulatorServer:
    """The Salesforce emulator on a free port, empty at the start of the test."""
    return _fresh(_salesforce_server)


@pytest.fixture
def zendesk_sandbox(_zendesk_server: EmulatorServer) -> EmulatorServer:
    """The Zendesk emulator on a free port, empty at the start of the test."""
    return _fresh(_zendesk_server)


@pytest.fixture
def hubspot_sandbox(_hubspot_server: EmulatorServer) -> EmulatorServer:
    """The HubSpot emulator on a free port, empty at the start of the test."""
    return _fresh(_hubspot_server)


@pytest.fixture
def twilio_sandbox(_twilio_server: EmulatorServer) -> EmulatorServer:
    """The Twilio emulator on a free port, empty at the start of the test."""
    return _fresh(_twilio_server)


@pytest.fixture
def x_sandbox(_x_server: EmulatorServer) -> EmulatorServer:
    """The X emulator on a free port, empty at the start of the test."""
    return _fresh(_x_server)
