"""Issue 13: a Zendesk bulk job outlives the attempt that submitted it, and is never submitted twice.

The daemon is "killed" while it waits for a job (its job wait raises), the
job stays queued in the emulator, the lease runs out, and a new daemon
delivers the same rows. Each test asserts on what the Zendesk emulator
holds and on the calls it counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store.ledger import open_dead_letters

OURS = "+14155550100"
CUSTOMER = "+14155550123"
UPDATE_MANY = "PUT /api/v2/tickets/update_many.json"


class Killed(BaseException):
    """The process dies here: nothing after it runs, no handler catches it."""


def _killed(seconds: float) -> None:
    raise Killed


class Daemons:
    """Daemons started one after another on one state store, on a clock the test moves."""

    def __init__(self, tmp_path: Path, zendesk: EmulatorServer, twilio: EmulatorServer) -> None:
        self.settings = write_sandbox_settings(tmp_path, {"zendesk": zendesk.url, "twilio": twilio.url},
                                               enabled=("zendesk", "twilio"))
        self.now = datetime.now(UTC)

    def run(self, *, dies_waiting: bool = False) -> list[Any]:
        """One sync cycle of a fresh daemon; `dies_waiting`: killed at its first wait for a Zendesk job."""
        with build_hub(load_config(self.settings), clock=lambda: self.now, sleep=lambda _: None) as hub:
            if dies_waiting:
                hub.crms["zendesk"].job_sleep = _killed
                with pytest.raises(Killed):
                    hub.sync_once()
                return []
            hub.sync_once()
            with hub.store.sessions() as session:
                return open_dead_letters(session)

    def lease_ends(self) -> None:
        self.now += timedelta(minutes=6)  # past the 5-minute lease: the rows are due for the next daemon


@pytest.fixture
def daemons(zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[Daemons]:
    twilio_sandbox.emulator.add_number(OURS)  # type: ignore[attr-defined]  # the Twilio emulator's helper
    yield Daemons(tmp_path, zendesk_sandbox, twilio_sandbox)


def _comments(zd: Any) -> list[list[str]]:
    """Each ticket's comments, as stored (a folded comment is one text)."""
    return [[c["body"] for c in zd.comments(t["id"])] for t in zd.tickets()]


def test_a_job_queued_when_its_daemon_died_is_awaited_not_submitted_again(
        daemons: Daemons, zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer) -> None:
    zd: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    tw.receive_message(CUSTOMER, OURS, "My parcel is late", at=daemons.now - timedelta(minutes=10))
    assert daemons.run() == []  # user and ticket made
    tw.receive_message(CUSTOMER, OURS, "Any news?", at=daemons.now - timedelta(minutes=5))
    tw.receive_message(CUSTOMER, OURS, "Hello?", at=daemons.now - timedelta(minutes=4))
    zd.configure(job_reads_per_step=None, job_autocomplete_seconds=None)  # jobs stay queued until told
    zd.calls.clear()
    daemons.run(dies_waiting=True)  # submits one update_many (both messages folded), dies waiting for it
    assert zd.calls[UPDATE_MANY] == 1 and _comments(zd) == [["My parcel is late"]]  # still queued

    daemons.lease_ends()
    zd.configure(job_reads_per_step=1)  # the background worker runs again
    assert daemons.run() == []

    assert zd.calls[UPDATE_MANY] == 1  # the stored job was awaited, nothing submitted again
    [[first, folded]] = _comments(zd)
    assert first == "My parcel is late"
    assert folded.count("Any news?") == 1 and folded.count("Hello?") == 1


def test_a_lost_answer_then_a_death_while_waiting_still_writes_each_message_once(
        daemons: Daemons, zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer) -> None:
    """The submit's answer is lost (the job id never came back) and the daemon dies waiting for it."""
    zd: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    tw.receive_message(CUSTOMER, OURS, "My parcel is late", at=daemons.now - timedelta(minutes=10))
    assert daemons.run() == []
    tw.receive_message(CUSTOMER, OURS, "Any news?", at=daemons.now - timedelta(minutes=5))
    zd.configure(job_reads_per_step=None, job_autocomplete_seconds=None)
    zd.faults.add(Fault("reset", after=True, path=r"/tickets/update_many\.json", times=1))
    zd.calls.clear()
    daemons.run(dies_waiting=True)  # the retry finds the queued job by listing, reports it, dies waiting
    assert zd.calls[UPDATE_MANY] == 1 and _comments(zd) == [["My parcel is late"]]

    daemons.lease_ends()
    zd.configure(job_reads_per_step=1)
    assert daemons.run() == []

    assert zd.calls[UPDATE_MANY] == 1
    assert _comments(zd) == [["My parcel is late", "Any news?"]]
