"""Exactly once over a generated traffic run: every replayed valid item is in the ledger once,
whether it came by poll, by webhook, or both, through an outage, and beside malformed items.

A small plan (crmhub.sandbox.traffic) is replayed into the Twilio and X emulators
(crmhub.sandbox.replay) and crmhub reads it with the real connectors, pointed at the
plan's own numbers and X account. What the replay cannot put into the emulators
(outbound messages, duplicates, junk timestamps) is counted by the replay report and is
not among the expected items.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from crmhub.connectors._retry import Retrier, RetryPolicy
from crmhub.connectors.twilio import TwilioChannel
from crmhub.connectors.x import XChannel
from crmhub.errors import ConnectorError
from crmhub.identities import x_account
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.replay import ReplayReport, replay_events
from crmhub.sandbox.traffic import TrafficPlan, generate
from crmhub.sandbox.twilio import DEFAULT_ACCOUNT_SID, TwilioEmulator
from crmhub.sandbox.x import DEFAULT_BEARER_TOKEN, DEFAULT_CONSUMER_KEY, DEFAULT_CONSUMER_SECRET, XEmulator
from crmhub.store import StateStore
from crmhub.store.ledger import open_dead_letters
from crmhub.store.schema import LedgerRow
from crmhub.sync.ingest import PollReport, poll_stream
from crmhub.webhooks import WebhookServer, ledger_ingest
from tests.webhook_apps import create_app

PLAN_TOKEN = ("plan-access-token", "plan-access-token-secret")  # OAuth 1.0a of the plan's support account
Key = tuple[str, str]  # (channel, external id)


@pytest.fixture
def emulators(twilio_sandbox: EmulatorServer, x_sandbox: EmulatorServer) -> dict[str, Any]:
    return {"twilio": twilio_sandbox.emulator, "x": x_sandbox.emulator}


@pytest.fixture
def plan(x_sandbox: EmulatorServer) -> TrafficPlan:
    """15 persons over 2 days, ending 3 days before sandbox now: X still lists those DMs (30 days).

    The start follows the sandbox clock, so the first seed whose plan has every channel,
    an X reply thread and an empty message or DM is taken (a few ms per seed).
    """
    start = (x_sandbox.emulator.clock.now() - timedelta(days=5)).replace(microsecond=0)
    for seed in range(100):
        plan = generate(seed=seed, persons=15, days=2, start=start, x_rate=0.7, malformed_rate=0.2, activity=4.0)
        events = [e for e in plan.iter_events() if not e.malformed and e.duplicate_of is None]
        if ({e.channel for e in events} == {"sms", "whatsapp", "call", "x_mention", "x_dm"}
                and any(e.in_reply_to and e.direction == "inbound" for e in events)
                and any(e.reason == "empty_body" and e.channel != "x_mention" for e in plan.iter_events())):
            return plan
    raise AssertionError(f"no seed below 100 gives a plan with every case from {start}")


class Reader:
    """The connectors on the plan's numbers and account, and one poll of every stream into the ledger."""

    def __init__(self, store: StateStore, twilio: EmulatorServer, x: EmulatorServer, plan: TrafficPlan,
                 sleeps: list[float]) -> None:
        self.store = store
        retrier = Retrier(RetryPolicy(max_attempts=2), sleep=sleeps.append, rng=random.Random(1))
        self.twilio = TwilioChannel(account_sid=DEFAULT_ACCOUNT_SID, auth_token=_twilio(twilio).auth_token(),
                                    base_url=twilio.url, retrier=retrier)
        self.x = XChannel(account=plan.endpoints.x_handle, bearer_token=DEFAULT_BEARER_TOKEN,
                          consumer_key=DEFAULT_CONSUMER_KEY, consumer_secret=DEFAULT_CONSUMER_SECRET,
                          access_token=PLAN_TOKEN[0], access_token_secret=PLAN_TOKEN[1], base_url=x.url,
                          retrier=retrier, clock=x.emulator.clock.time)

    def poll(self) -> list[PollReport]:
        streams: list[tuple[str, str, str, Callable[[str | None], Iterator[Any]]]] = [
            ("twilio", "messages", self.twilio.account_sid, self.twilio.message_pages),
            ("twilio", "calls", self.twilio.account_sid, self.twilio.call_pages),
            ("x", "mentions", self.x.account_handle, self.x.mention_pages),
            ("x", "dm_events", self.x.account_handle, self.x.dm_pages),
        ]
        return [poll_stream(self.store, source=source, stream=stream, partition=partition, pages=pages,
                            now=datetime.now(UTC)) for source, stream, partition, pages in streams]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def reader(store: StateStore, twilio_sandbox: EmulatorServer, x_sandbox: EmulatorServer, plan: TrafficPlan,
           sleeps: list[float]) -> Reader:
    return Reader(store, twilio_sandbox, x_sandbox, plan, sleeps)


@pytest.fixture
def webhooks(store: StateStore, emulators: dict[str, Any], plan: TrafficPlan) -> Iterator[WebhookServer]:
    """Our receiver, set as the plan numbers' sms_url and voice status url and as the X webhook."""
    twilio, x = _twilio(emulators["twilio"]), _x(emulators["x"])
    app = create_app(ledger_ingest(store, lambda: datetime.now(UTC)), twilio_auth_token=twilio.auth_token(),
                     public_url=None, x_consumer_secret=DEFAULT_CONSUMER_SECRET,
                     x_account=lambda: x_account(plan.endpoints.x_user_id, plan.endpoints.x_handle))
    with WebhookServer(app) as server:
        for number in (plan.endpoints.sms_number, plan.endpoints.whatsapp_number):
            twilio.add_number(number, sms_url=f"{server.url}/webhooks/twilio/messages",
                              voice_status_url=f"{server.url}/webhooks/twilio/calls")
        ours = plan.endpoints.x_user_id
        x.add_user(plan.endpoints.x_handle, plan.endpoints.x_handle, user_id=ours)  # the replay keeps it as is
        assert x.set_webhook(f"{server.url}/webhooks/x", DEFAULT_CONSUMER_SECRET, subscriptions=[ours])
        yield server


def replay(plan: TrafficPlan, emulators: dict[str, Any], **window: datetime) -> ReplayReport:
    return replay_events(plan, emulators, x_access_token=PLAN_TOKEN, **window)


def expected(plan: TrafficPlan, *reports: ReplayReport) -> set[Key]:
    """(channel, item id) of every replayed valid event that crmhub reads.

    Excluded, on purpose: malformed items (they must be dead-lettered, see the last test),
    and our own replies on X (outbound `x_mention`): they mention the customer, not us, so
    they are on no timeline the poller reads, and the webhook ignores them to match.
    Everything else is deliverable both ways: inbound SMS/WhatsApp by the numbers'
    sms_url, calls in both directions by the numbers' voice status url (all plan calls end
    in a final status), X mentions and DMs by the Account Activity webhook.
    """
    ids = {event_id: item for report in reports for event_id, item in report.ids.items()}
    keys = set()
    for event in plan.iter_events():
        item = ids.get(event.event_id)
        if item is None or event.malformed or event.duplicate_of is not None:
            continue
        if event.channel == "x_mention" and event.direction == "outbound":
            continue
        keys.add((event.channel, item))
    assert {channel for channel, _ in keys} == {"sms", "whatsapp", "call", "x_mention", "x_dm"}
    return keys


def stored(store: StateStore) -> dict[Key, int]:
    """How many ledger rows each (channel, external id) has."""
    with store.transaction() as session:
        query = select(LedgerRow.channel, LedgerRow.external_id, func.count()).group_by(
            LedgerRow.channel, LedgerRow.external_id)
        return {(channel, external_id): count for channel, external_id, count in session.execute(query)}


def assert_exactly_once(store: StateStore, keys: set[Key]) -> None:
    counts = stored(store)
    assert keys - counts.keys() == set(), "missing from the ledger"
    assert {key: n for key, n in counts.items() if key in keys and n != 1} == {}, "stored more than once"


def drain(emulators: dict[str, Any]) -> None:
    """Wait (with a deadline) until both emulators have delivered every queued webhook."""
    assert _twilio(emulators["twilio"]).wait_for_webhooks(timeout=20)
    assert _x(emulators["x"]).wait_for_deliveries(timeout=20)


def _twilio(emulator: Any) -> TwilioEmulator:
    emulator = getattr(emulator, "emulator", emulator)
    assert isinstance(emulator, TwilioEmulator)
    return emulator


def _x(emulator: Any) -> XEmulator:
    emulator = getattr(emulator, "emulator", emulator)
    assert isinstance(emulator, XEmulator)
    return emulator


# ---- the three paths -----------------------------------------------------------------------------


def test_by_poll_only(store: StateStore, emulators: dict[str, Any], plan: TrafficPlan, reader: Reader) -> None:
    keys = expected(plan, replay(plan, emulators))
    first = reader.poll()
    again = reader.poll()

    assert_exactly_once(store, keys)
    assert sum(r.stored for r in first) == len(stored(store)) and sum(r.stored for r in again) == 0


def test_by_webhook_only(store: StateStore, emulators: dict[str, Any], plan: TrafficPlan,
                         webhooks: WebhookServer) -> None:
    keys = expected(plan, replay(plan, emulators))
    drain(emulators)

    assert_exactly_once(store, keys)


def test_by_poll_and_webhook_at_once(store: StateStore, emulators: dict[str, Any], plan: TrafficPlan,
                                     reader: Reader, webhooks: WebhookServer) -> None:
    keys = expected(plan, replay(plan, emulators))
    racing = reader.poll()  # while the emulators are still delivering webhooks
    drain(emulators)
    after = reader.poll()

    assert_exactly_once(store, keys)
    assert sum(r.repeats for r in racing + after) > 0  # the two paths did meet on the same items


# ---- an outage, and malformed items -------------------------------------------------------------


def test_a_poll_that_fails_in_an_outage_catches_up_once_it_is_over(
        store: StateStore, emulators: dict[str, Any], plan: TrafficPlan, reader: Reader,
        sleeps: list[float]) -> None:
    middle = plan_start(plan) + timedelta(days=1)
    before = replay(plan, emulators, until=middle)
    reader.poll()
    held = stored(store)
    for emulator in emulators.values():
        emulator.faults.add(Fault(kind="server_error", times=None))
    during = replay(plan, emulators, start_after=middle)  # items keep arriving (seed API: no fault applies)

    with pytest.raises(ConnectorError):
        reader.poll()
    assert sleeps and stored(store) == held  # it retried, gave up, and stored nothing half-way

    for emulator in emulators.values():
        emulator.faults.clear()
    reader.poll()
    assert_exactly_once(store, expected(plan, before, during))
    assert len(stored(store)) > len(held)


def test_a_page_with_a_malformed_item_stores_the_good_ones_and_dead_letters_the_bad(
        store: StateStore, emulators: dict[str, Any], plan: TrafficPlan, reader: Reader) -> None:
    report = replay(plan, emulators)
    reader.poll()

    # Empty messages and DMs; an empty X mention is not checked: the emulator then mentions
    # @crmhub_support instead of the plan's account, so it is not ours to read.
    empty = {event.channel: report.ids[event.event_id] for event in plan.iter_events()
             if event.reason == "empty_body" and event.event_id in report.ids and event.channel != "x_mention"}
    assert empty
    with store.transaction() as session:
        refs = {letter.ref for letter in open_dead_letters(session, limit=1000)}
    assert {f"x_dm:{item}" if channel == "x_dm" else item for channel, item in empty.items()} <= refs
    assert not {(channel, item) for channel, item in empty.items()} & stored(store).keys()
    assert_exactly_once(store, expected(plan, report))


def plan_start(plan: TrafficPlan) -> datetime:
    return next(plan.iter_events()).occurred_at
