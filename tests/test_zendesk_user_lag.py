"""Issue 13: a Zendesk user younger than the incremental export's lag is still found, never made twice.

Zendesk's incremental user export leaves out the last minute's changes, so
crmhub's contact mirror does not see a user it (or an agent) created a few
seconds ago, and tries to create it again; Zendesk refuses with 422 "already
being used". Each test asserts on what the Zendesk emulator holds and on the
dead-letter table.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store.ledger import open_dead_letters
from tests.crm_views import zendesk_bodies

OURS = "+14155550100"
CUSTOMER = "+14155550123"


def _customers(zd: Any) -> list[dict[str, Any]]:
    return [u for u in zd.users() if u["role"] == "end-user"]


def _bodies(zd: Any) -> list[str]:
    return [text for t in zd.tickets() for text in zendesk_bodies(zd, t["id"])]


def _settings(tmp_path: Path, zendesk: EmulatorServer, twilio: EmulatorServer) -> Path:
    return write_sandbox_settings(tmp_path, {"zendesk": zendesk.url, "twilio": twilio.url},
                                  enabled=("zendesk", "twilio"))


def _dead_letters(hub: Any) -> list[Any]:
    with hub.store.sessions() as session:
        return open_dead_letters(session)


def test_next_message_within_the_export_lag_lands_on_the_user_crmhub_just_created(
        zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    zd: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    start = datetime.now(UTC) - timedelta(minutes=10)
    tw.receive_message(CUSTOMER, OURS, "My parcel is late", at=start)
    with build_hub(load_config(_settings(tmp_path, zendesk_sandbox, twilio_sandbox))) as hub:
        hub.sync_once()
        assert len(_customers(zd)) == 1
        zd.clock.advance(5)  # well within the export's minute: the mirror still does not list the user
        tw.receive_message(CUSTOMER, OURS, "Any news?", at=start + timedelta(seconds=30))
        hub.sync_once()
        hub.sync_once()
        letters = _dead_letters(hub)
    assert letters == []
    [user] = _customers(zd)
    assert sorted(_bodies(zd)) == ["Any news?", "My parcel is late"]
    assert all(t["requester_id"] == user["id"] for t in zd.tickets())


def test_first_message_links_to_a_user_an_agent_created_seconds_ago(
        zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    zd: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    with build_hub(load_config(_settings(tmp_path, zendesk_sandbox, twilio_sandbox))) as hub:
        hub.sync_once()  # the mirror is loaded, the account has no customer yet
        zd.clock.advance(120)
        agent_made = zd.add_user("Jane Doe", None, phone=CUSTOMER)  # no external id: not crmhub's
        zd.clock.advance(5)
        tw.receive_message(CUSTOMER, OURS, "My parcel is late", at=datetime.now(UTC) - timedelta(minutes=1))
        hub.sync_once()
        hub.sync_once()
        letters = _dead_letters(hub)
    assert letters == []
    assert [u["id"] for u in _customers(zd)] == [agent_made]
    [ticket] = zd.tickets()
    assert ticket["requester_id"] == agent_made
    assert _bodies(zd) == ["My parcel is late"]


def test_a_lost_answer_to_the_user_create_still_gives_one_user_and_the_message_once(
        zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    zd: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    tw.receive_message(CUSTOMER, OURS, "My parcel is late", at=datetime.now(UTC) - timedelta(minutes=10))
    zendesk_sandbox.emulator.faults.add(Fault(kind="reset", method="POST", path=r"/users/create(_or_update)?_many",
                                     after=True))
    with build_hub(load_config(_settings(tmp_path, zendesk_sandbox, twilio_sandbox))) as hub:
        for _ in range(3):
            hub.sync_once()
        letters = _dead_letters(hub)
    assert letters == []
    assert len(_customers(zd)) == 1
    assert _bodies(zd) == ["My parcel is late"]
