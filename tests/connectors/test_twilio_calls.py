"""Twilio calls: polled call logs with their recordings, and the call webhook landing on the same ledger row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from crmhub.connectors.twilio import TwilioChannel
from crmhub.model import CallInfo, Channel, Direction, Interaction
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from crmhub.store import StateStore
from crmhub.store.ledger import to_interaction
from crmhub.store.schema import LedgerRow
from crmhub.sync.ingest import poll_stream
from crmhub.webhooks import WebhookServer, ledger_ingest
from tests.webhook_apps import create_app

OURS = "+14155550100"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def channel(server: EmulatorServer, overlap: timedelta = timedelta(minutes=10)) -> TwilioChannel:
    return TwilioChannel(account_sid=DEFAULT_ACCOUNT_SID, auth_token=DEFAULT_AUTH_TOKEN, base_url=server.url,
                         page_size=2, overlap=overlap)


def polled(server: EmulatorServer, cursor: str | None = None) -> dict[str, Interaction]:
    return {i.external_id: i for page in channel(server).call_pages(cursor) for i in page.interactions}


def recording_url(emulator: Any, call_sid: str) -> str:
    recordings = emulator.snapshot()["recordings"].values()
    return str(next(r["media_url"] for r in recordings if r["call_sid"] == call_sid))


def stored(store: StateStore) -> list[Interaction]:
    with store.transaction() as session:
        return [to_interaction(row) for row in session.scalars(select(LedgerRow).order_by(LedgerRow.id))]


def test_ended_calls_become_call_logs_with_their_recording(twilio_sandbox: EmulatorServer) -> None:
    twilio: Any = twilio_sandbox.emulator
    twilio.add_number(OURS)
    answered = twilio.add_call("+14155550123", OURS, duration=42, start=START, recording=True)
    missed = twilio.add_call(OURS, "+14155550124", direction="outbound-api", status="no-answer",
                             start=START + timedelta(minutes=1))
    ongoing = twilio.add_call("+14155550125", OURS, status="in-progress", start=START + timedelta(minutes=2))
    short = twilio.add_call("+14155550126", OURS, duration=5, start=START + timedelta(minutes=3))

    calls = polled(twilio_sandbox)

    assert set(calls) == {answered, missed, short}  # the ongoing call is not a call log yet
    log = calls[answered]
    assert (log.channel, log.direction, log.conversation_key) == (Channel.CALL, Direction.INBOUND,
                                                                  f"call:{OURS}:+14155550123")
    assert (log.sender.value, log.recipient.value, log.occurred_at) == ("+14155550123", OURS, START)
    assert log.call == CallInfo(42, "completed", recording_url(twilio, answered))
    assert calls[missed].direction is Direction.OUTBOUND
    assert calls[missed].conversation_key == f"call:{OURS}:+14155550124"
    assert calls[missed].call == CallInfo(0, "no-answer", None)
    assert calls[short].call == CallInfo(5, "completed", None)
    assert ongoing not in calls


def test_an_ongoing_call_holds_the_cursor_so_a_later_poll_reads_it_again(twilio_sandbox: EmulatorServer) -> None:
    twilio: Any = twilio_sandbox.emulator
    twilio.add_number(OURS)
    twilio.add_call("+14155550125", OURS, status="ringing", start=START)
    twilio.add_call("+14155550126", OURS, duration=5, start=START + timedelta(hours=1))

    pages = list(channel(twilio_sandbox, overlap=timedelta(minutes=1)).call_pages(None))

    # newest ended call at START+1h, but the ringing call started at START: next window starts there
    assert pages[-1].last and pages[-1].cursor == (START + timedelta(minutes=1)).isoformat()
    assert [len(p.interactions) for p in pages] == [1]


def test_a_call_logged_by_webhook_is_not_stored_again_by_the_poll(
        twilio_sandbox: EmulatorServer, store: StateStore) -> None:
    twilio: Any = twilio_sandbox.emulator
    app = create_app(ledger_ingest(store, lambda: datetime.now(UTC)), twilio_auth_token=DEFAULT_AUTH_TOKEN,
                     public_url=None, x_consumer_secret=None)
    with WebhookServer(app) as server:
        twilio.add_number(OURS, voice_status_url=f"{server.url}/webhooks/twilio/calls")
        sid = twilio.add_call("+14155550123", OURS, duration=42, start=START, recording=True)
        twilio.add_call("+14155550124", OURS, status="in-progress", start=START)
        assert twilio.wait_for_webhooks(timeout=5)

    assert [hook["status"] for hook in twilio.webhook_log()] == [200, 200]
    assert app.state.counts[("twilio.calls", "stored")] == 1
    assert app.state.counts[("twilio.calls", "ignored")] == 1
    [hooked] = stored(store)
    assert hooked.external_id == sid and hooked.call == CallInfo(42, "completed", recording_url(twilio, sid))

    report = poll_stream(store, source="twilio", stream="calls", partition=DEFAULT_ACCOUNT_SID,
                         pages=channel(twilio_sandbox).call_pages, now=datetime.now(UTC))

    assert (report.stored, report.repeats) == (0, 1)
    assert len(stored(store)) == 1
    # the webhook built the very Interaction the poller builds, call start time included
    assert hooked == polled(twilio_sandbox)[sid]
