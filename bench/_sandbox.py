"""What every bench shares: emulators with room to run, seeded customers, a hub on sandbox time, counters.

Benches drive crmhub only through its public entry points (`build_hub`,
`Hub.sync_once`), the sandbox runner and the emulators' seed methods, so
they keep working while the engine underneath changes.
"""

from __future__ import annotations

import json
import platform
import random
import resource
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.sandbox.postgres import ADMIN
from crmhub.sandbox.runner import running_sandbox
from crmhub.sandbox.settings import write_sandbox_settings

OURS = "+14155550100"
CRMS = ("salesforce", "zendesk", "hubspot")
FORMATS = ("({a}) {b}-{c}", "+1 {a}.{b}.{c}", "{a}-{b}-{c}", "+1{a}{b}{c}")
BODIES = ("Where is my order?", "I need a refund", "Thanks!", "Can you call me back?")


def phones(first: int, count: int) -> list[str]:
    """`count` ten-digit US numbers of the 415-555 block from `first` (warm traffic; history uses another area)."""
    return [f"415555{i:04d}" for i in range(first, first + count)]


@contextmanager
def sandbox(crms: Sequence[str] = CRMS) -> Iterator[dict[str, Any]]:
    """The CRM emulators and Twilio, limits raised so the bench measures crmhub, not the vendors' pacing."""
    with running_sandbox(apis=(*crms, "twilio")) as servers:
        emulators = {api: server.emulator for api, server in servers.items()}
        if "salesforce" in emulators:
            emulators["salesforce"].set_api_limit(10_000_000)
            for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
                emulators["salesforce"].add_queue(name.replace("_", " "), name)
        if "zendesk" in emulators:
            emulators["zendesk"].configure(rate_limit_per_minute=1_000_000)
        if "hubspot" in emulators:
            emulators["hubspot"].set_limits(ten_second_max=1_000_000, daily_max=100_000_000, search_per_second=1000)
        emulators["twilio"].add_number(OURS)
        yield servers


def seed_contacts(servers: dict[str, Any], crms: Sequence[str], numbers: Sequence[str], rng: random.Random,
                  *, prefix: str = "Customer") -> None:
    """Each number a contact in every chosen CRM, each phone written its own messy way."""
    for i, number in enumerate(numbers):
        def shown() -> str:
            return rng.choice(FORMATS).format(a=number[:3], b=number[3:6], c=number[6:])

        if "salesforce" in crms:
            servers["salesforce"].emulator.insert("Contact", LastName=f"{prefix} {i}", Phone=shown(),
                                                  Tier__c=rng.choice(["Gold", "Standard"]))
        if "zendesk" in crms:
            servers["zendesk"].emulator.add_user(name=f"{prefix} {i}", phone=shown())
        if "hubspot" in crms:
            servers["hubspot"].emulator.add("contacts", lastname=f"{prefix} {i}", phone=shown())


def send_messages(servers: dict[str, Any], senders: Sequence[str], rng: random.Random, *, start: datetime,
                  step: float = 20.0) -> None:
    """One inbound SMS per entry of `senders` (ten-digit numbers), `step` seconds apart from `start`."""
    twilio = servers["twilio"].emulator
    for i, number in enumerate(senders):
        twilio.receive_message(f"+1{number}", OURS, rng.choice(BODIES), at=start + timedelta(seconds=step * i))


def calls(servers: dict[str, Any]) -> dict[str, int]:
    """API calls each emulator has answered so far."""
    return {api: server.emulator.total_calls for api, server in servers.items()}


@contextmanager
def hub_on(servers: dict[str, Any], directory: Path, *, crms: Sequence[str] = CRMS,
           state_url: str | None = None, languages: Sequence[str] = ()) -> Iterator[Hub]:
    """A hub for the running sandbox, on sandbox time: its waits (Zendesk job polls, pacing) move that clock.

    `languages`: settings `languages.expected` (language detection on at routing); none: detection off.
    """
    clock = servers["twilio"].emulator.clock
    settings = write_sandbox_settings(directory, {api: s.url for api, s in servers.items()},
                                      enabled=(*crms, "twilio"), state_url=state_url)
    if languages:
        settings.write_text(settings.read_text() + f"languages: {{expected: [{', '.join(languages)}]}}\n")
    with build_hub(load_config(settings), clock=clock.now, sleep=clock.advance, monotonic=clock.time) as hub:
        yield hub


@dataclass
class SqlCounter:
    """Statements an engine sent to the database (an executemany counts once)."""

    statements: int = 0
    _engine: Engine | None = field(default=None, repr=False)

    def attach(self, engine: Engine) -> SqlCounter:
        self._engine = engine
        event.listen(engine, "before_cursor_execute", self._count)
        return self

    def _count(self, *_args: Any) -> None:
        self.statements += 1


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def thread_cpu() -> float:
    """CPU seconds of the calling thread only: the in-process emulators run in threads of their own."""
    return time.thread_time()


def postgres_version() -> str | None:
    """The local PostgreSQL server's version, or None when it is not reachable."""
    try:
        import psycopg

        with psycopg.connect(ADMIN) as connection:
            row = connection.execute("SHOW server_version").fetchone()
            return str(row[0]).split()[0] if row else None
    except Exception:  # noqa: BLE001  # absent, refused, timed out: all mean "no PostgreSQL here"
        return None


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return {"cpu": cpu, "cores": str(os.cpu_count() or "?"), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "postgresql": postgres_version() or "absent",
            "commit": _commit()}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def emit(result: dict[str, Any], as_json: bool) -> None:
    """Print a bench's result: one JSON line for `bench/run.py`, else readable lines."""
    if as_json:
        print(json.dumps(result, default=str))
        return
    for key, value in result.items():
        print(f"{key}: {value}")
