"""Clients of the Zendesk emulator shared by its test modules (no tests here).

zenpy is pointed at the emulator with its public environment knobs
`ZENPY_FORCE_SCHEME` / `ZENPY_FORCE_NETLOC` (see docs/sandbox/zendesk.md for
why not yet through `build_session(base_url=...)`), and built with
`ratelimit_budget=1` so a 429 raises `RatelimitBudgetExceeded` at once
instead of sleeping `Retry-After` seconds.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from zenpy import Zenpy

from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.zendesk import ZendeskEmulator

AGENT = "agent@sandbox.zendesk.test"
TOKEN = "sandbox-token"


def make_zenpy(**credentials: Any) -> Zenpy:
    """A zenpy client with the default credentials unless others are given."""
    auth = credentials or {"email": AGENT, "token": TOKEN}
    return Zenpy(subdomain="sandbox", session=build_session(), ratelimit_budget=1, disable_cache=True, **auth)


class Kit:
    """One test's view of the sandbox: the emulator, zenpy pointed at it, a raw session.

    Use as a context manager; it closes the raw session on exit.
    """

    def __init__(self, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
        assert isinstance(server.emulator, ZendeskEmulator)
        monkeypatch.setenv("ZENPY_FORCE_SCHEME", "http")
        monkeypatch.setenv("ZENPY_FORCE_NETLOC", f"127.0.0.1:{server.port}")
        self.server = server
        self.emu: ZendeskEmulator = server.emulator
        self.zd = make_zenpy()
        self.http = requests.Session()
        self.http.auth = (f"{AGENT}/token", TOKEN)

    def url(self, path: str) -> str:
        """The full URL of an API v2 path, e.g. `url("tickets.json")`."""
        return api_url(self.server, path)

    def __enter__(self) -> Kit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()


def api_url(server: EmulatorServer, path: str) -> str:
    return f"{server.url}/api/v2/{path}"
