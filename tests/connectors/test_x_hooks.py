"""X Account Activity webhooks: signed events from the emulator become the poller's Interactions, stored once."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from crmhub.connectors._retry import Retrier, RetryPolicy
from crmhub.connectors.x import XChannel
from crmhub.connectors.x_hooks import XAccountActivity
from crmhub.identities import x_account
from crmhub.model import Channel, Direction, Interaction
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.x import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_ACCESS_TOKEN_SECRET,
    DEFAULT_ACCOUNT,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_BEARER_TOKEN,
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
    XEmulator,
)
from crmhub.store import StateStore
from crmhub.store.ledger import open_dead_letters, to_interaction
from crmhub.store.schema import LedgerRow
from crmhub.sync.ingest import poll_stream
from crmhub.webhooks import WebhookServer, ledger_ingest
from tests.webhook_apps import create_app

ME = DEFAULT_ACCOUNT_ID
HOOK = "/webhooks/x"
COMPARED = ("channel", "direction", "external_id", "conversation_key", "sender", "recipient", "text",
            "occurred_at", "media")


@pytest.fixture
def x(x_sandbox: EmulatorServer) -> XEmulator:
    emulator = x_sandbox.emulator
    assert isinstance(emulator, XEmulator)
    return emulator


@pytest.fixture
def hooked(x: XEmulator, store: StateStore) -> Iterator[Any]:
    """Our webhook receiver, registered (CRC passed) as the support account's Account Activity webhook."""
    app = create_app(ledger_ingest(store, lambda: datetime.now(UTC)), twilio_auth_token=None, public_url=None,
                     x_consumer_secret=DEFAULT_CONSUMER_SECRET, x_account=lambda: x_account(ME, DEFAULT_ACCOUNT))
    with WebhookServer(app) as server:
        assert x.set_webhook(server.url + HOOK, DEFAULT_CONSUMER_SECRET) is True
        yield app


def poller(server: EmulatorServer) -> XChannel:
    return XChannel(account=DEFAULT_ACCOUNT, bearer_token=DEFAULT_BEARER_TOKEN, consumer_key=DEFAULT_CONSUMER_KEY,
                    consumer_secret=DEFAULT_CONSUMER_SECRET, access_token=DEFAULT_ACCESS_TOKEN,
                    access_token_secret=DEFAULT_ACCESS_TOKEN_SECRET, base_url=server.url,
                    retrier=Retrier(RetryPolicy(max_attempts=2), sleep=lambda s: None, rng=random.Random(1)),
                    clock=server.emulator.clock.time)


def ledger(store: StateStore) -> dict[tuple[str, str], Interaction]:
    with store.transaction() as session:
        rows = [to_interaction(row) for row in session.scalars(select(LedgerRow).order_by(LedgerRow.id))]
    assert len({(i.channel, i.external_id) for i in rows}) == len(rows)
    return {(i.channel.value, i.external_id): i for i in rows}


def fields(item: Interaction) -> dict[str, Any]:
    """What both paths must agree on, identities with their displays (which `==` skips)."""
    values = {name: getattr(item, name) for name in COMPARED}
    values["displays"] = (item.sender.display, item.recipient.display)
    return values


def test_signed_events_land_in_the_ledger_and_polling_them_again_stores_nothing(
        x: XEmulator, x_sandbox: EmulatorServer, store: StateStore, hooked: Any) -> None:
    jane, bob, ann = x.add_user("Jane_Doe"), x.add_user("bob"), x.add_user("ann")
    root = x.post_mention(jane, "my order never came")
    ours = x.post_mention(ME, "sorry! can you DM us?", in_reply_to=root)  # mentions jane, not us: no one stores it
    follow_up = x.post_mention(jane, "done", in_reply_to=ours)  # a mention of us in the thread of `root`
    other = x.post_mention(bob, "hello")
    x.post_mention(bob, "hi @ann")  # mentions ann only: X sends it to no subscription of ours
    dm_in = x.send_dm(jane, ME, "order 1234 please")
    dm_out = x.send_dm(ME, jane, "on it")
    empty = x.send_dm(ann, ME, "   ")
    assert x.wait_for_deliveries(timeout=10)

    hooked_items = ledger(store)
    assert set(hooked_items) == {("x_mention", root), ("x_mention", follow_up), ("x_mention", other),
                                 ("x_dm", dm_in), ("x_dm", dm_out)}
    thread = {hooked_items[("x_mention", root)].conversation_key,
              hooked_items[("x_mention", follow_up)].conversation_key}
    assert thread == {f"x_mention:{root}"}
    assert hooked_items[("x_dm", dm_out)].direction is Direction.OUTBOUND
    with store.transaction() as session:
        assert [d.ref for d in open_dead_letters(session)] == [f"x_dm:{empty}"]
    counts = hooked.state.counts
    assert (counts[("x.events", "stored")], counts[("x.events", "dead_lettered")]) == (5, 1)
    assert counts[("x.events", "ignored")] == 1  # our reply: not on our mentions timeline

    channel = poller(x_sandbox)
    polled = {(i.channel.value, i.external_id): i
              for pages in (channel.mention_pages(None), channel.dm_pages(None))
              for page in pages for i in page.interactions}
    assert polled.keys() == hooked_items.keys()
    for key, item in polled.items():
        assert fields(hooked_items[key]) == fields(item), key
    reports = [poll_stream(store, source="x", stream=name, partition=channel.account_handle, pages=pages,
                           now=datetime.now(UTC))
               for name, pages in (("mentions", channel.mention_pages), ("dm_events", channel.dm_pages))]
    assert [(r.stored, r.repeats, r.dead_lettered) for r in reports] == [(0, 3, 0), (0, 2, 0)]
    assert ledger(store) == hooked_items
    with store.transaction() as session:
        assert len(open_dead_letters(session)) == 1  # the poll's dead letter for the empty DM is the same one


# ---- translation without the emulator ---------------------------------------------------------

US = "42"
ACME = x_account(US, "acme")


def mention(post_id: str, author: str = "7", reply_to: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id_str": post_id, "text": "@acme hi", "timestamp_ms": "1767600000000",
            "user": {"id_str": author, "screen_name": f"user{author}"},
            "in_reply_to_status_id_str": reply_to, "in_reply_to_user_id_str": None,
            "entities": {"user_mentions": [{"id_str": US, "screen_name": "Acme"}]}, **extra}


def dm(event_id: str, sender: str, recipient: str, text: str = "hello", **data: Any) -> dict[str, Any]:
    return {"type": "message_create", "id": event_id, "created_timestamp": "1767600000123",
            "message_create": {"sender_id": sender, "target": {"recipient_id": recipient},
                               "message_data": {"text": text, **data}}}


def test_a_reply_to_an_unseen_post_is_left_to_the_poll_and_a_seen_thread_is_followed() -> None:
    events = XAccountActivity()
    unseen = events.translate({"for_user_id": US, "tweet_create_events": [mention("101", reply_to="99")]}, ACME)
    events.translate({"for_user_id": US, "tweet_create_events": [mention("100")]}, ACME)
    reply = events.translate({"for_user_id": US, "tweet_create_events": [mention("102", reply_to="100")]}, ACME)

    assert (unseen.interactions, unseen.deferred) == ([], 1)
    assert [i.conversation_key for i in reply.interactions] == ["x_mention:100"]
    assert reply.interactions[0].occurred_at == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def test_another_accounts_events_are_ignored_and_broken_events_are_dead_lettered() -> None:
    events = XAccountActivity()
    theirs = events.translate({"for_user_id": "9", "tweet_create_events": [mention("100")],
                               "users": {"9": {"screen_name": "acme"}}}, ACME)  # our handle, not our id
    mixed = events.translate({
        "for_user_id": US, "users": {US: {"screen_name": "Acme"}, "7": {"screen_name": "Jane"}},
        "direct_message_events": [dm("500", "7", US), dm("501", "7", US, text=""), {"type": "message_create"},
                                  dm("502", "7", US, text="", attachment={"type": "media", "media": {
                                      "id_str": "77", "type": "photo"}})],
        "favorite_events": [{}],
    }, ACME)

    assert (theirs.interactions, theirs.ignored) == ([], 1)
    assert [(i.channel, i.external_id, i.sender.display, i.media) for i in mixed.interactions] == [
        (Channel.X_DM, "500", "jane", ()), (Channel.X_DM, "502", "jane", ("3_77",))]
    assert [m.ref for m in mixed.malformed][0] == "x_dm:501"
    assert mixed.malformed[1].ref.startswith("x-webhook-") and mixed.ignored == 1
