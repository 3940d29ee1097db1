"""The Twilio reconcile poll: a short window while message webhooks are healthy, records the ledger holds skipped
untranslated, and a message whose webhook was dropped still found (issue 13, the daemon's CPU under load)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.connectors.twilio import ReconcileWindow
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store.schema import LedgerRow
from crmhub.sync.ingest import PollReport
from crmhub.webhooks import WebhookServer

OURS = "+14155550100"  # the sandbox settings' number: its webhooks reach the receiver
SILENT = "+14155550101"  # another number of the account, whose webhooks never arrive (dropped)
FULL, QUIET = timedelta(minutes=10), timedelta(minutes=1)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_window_is_short_only_while_webhooks_are_stored_and_none_failed_and_never_on_a_first_poll() -> None:
    clock = Clock()
    window = ReconcileWindow(full=FULL, quiet=QUIET, clock=clock)
    window.webhook("stored")
    assert window.overlap() == FULL  # the process has not read the full window yet (webhooks missed while down)
    window.read(FULL)
    assert window.overlap() == QUIET
    clock.now += 61
    assert window.overlap() == FULL  # no webhook stored within the short window: are they still coming?
    window.webhook("repeat")
    assert window.overlap() == QUIET
    window.webhook("error")  # one answered without being stored: read the full window for a while
    window.webhook("stored")
    assert window.overlap() == FULL
    clock.now += 601
    window.webhook("stored")
    assert window.overlap() == QUIET


@pytest.fixture
def hub(salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[Hub]:
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url})
    with build_hub(load_config(settings)) as built:
        yield built


def test_a_message_whose_webhook_was_dropped_is_found_by_the_short_window_which_skips_older_ones(
        hub: Hub, twilio_sandbox: EmulatorServer) -> None:
    tw: Any = twilio_sandbox.emulator
    tw.add_number(SILENT)
    now = datetime.now(UTC)
    for n in range(3):  # older than the short window
        tw.receive_message(f"+1415555020{n}", SILENT, f"old message {n}", at=now - timedelta(minutes=8))
    tw.receive_message("+14155550210", SILENT, "recent message", at=now - timedelta(seconds=10))
    first = _message_poll(hub)
    assert (first.seen, first.stored) == (4, 4)
    with WebhookServer(hub.webhook_app()) as server:
        tw.add_number(OURS, sms_url=f"{server.url}/webhooks/twilio/messages")
        by_webhook = tw.receive_message("+14155550211", OURS, "came by webhook")
        assert tw.wait_for_webhooks(timeout=10)
        assert [h["status"] for h in tw.webhook_log()] == [200]
        dropped = tw.receive_message("+14155550212", SILENT, "its webhook never came")
        second = _message_poll(hub)
    # Read back only a minute before the cursor: the recent message, the webhook's, the dropped one.
    assert (second.seen, second.stored, second.repeats) == (3, 1, 2)
    sids = _ledger_sids(hub)
    assert len(sids) == 6 and {by_webhook, dropped} <= sids


def test_a_poll_skips_what_the_ledger_holds_and_counts_it_as_repeats(hub: Hub, twilio_sandbox: EmulatorServer) -> None:
    tw: Any = twilio_sandbox.emulator
    tw.add_number(SILENT)
    for n in range(5):
        tw.receive_message(f"+1415555030{n}", SILENT, f"message {n}")
    first = _message_poll(hub)
    again = _message_poll(hub)  # no webhook in this process: the full overlap, all five read back
    assert (first.stored, again.seen, again.stored, again.repeats) == (5, 5, 0, 5)


def _message_poll(hub: Hub) -> PollReport:
    """One run of the `poll:twilio` job; its messages stream's report."""
    [messages] = [report for report in hub.polls()["twilio"]() if report.stream == "messages"]
    return messages


def _ledger_sids(hub: Hub) -> set[str]:
    with hub.store.transaction() as session:
        return set(session.scalars(select(LedgerRow.external_id)))
