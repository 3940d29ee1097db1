"""MetaChannel against the Meta Graph emulator: polling, webhooks, windows, lost answers, throttling."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import select

from crmhub.connectors._budget import read_headroom
from crmhub.connectors._retry import Retrier, RetryPolicy
from crmhub.connectors.meta import MetaChannel, handshake, signature_ok, translate_webhook
from crmhub.errors import RateLimited, Rejected
from crmhub.model import Channel, Direction, Identity, IdentityKind, Interaction, OutboundMessage, ReplyStatus
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.meta import DEFAULT_APP_SECRET, DEFAULT_IG_ID, DEFAULT_PAGE_ID, DEFAULT_PAGE_TOKEN, MetaEmulator
from crmhub.store import StateStore
from crmhub.store.ledger import ingest_page, open_dead_letters, to_interaction
from crmhub.store.schema import LedgerRow
from crmhub.sync.ingest import poll_stream

DAY = 86400.0
PAGE = Identity(IdentityKind.MESSENGER, DEFAULT_PAGE_ID)


@pytest.fixture
def meta(meta_sandbox: EmulatorServer) -> MetaEmulator:
    emulator = meta_sandbox.emulator
    assert isinstance(emulator, MetaEmulator)
    return emulator


@pytest.fixture
def channel(meta_sandbox: EmulatorServer) -> MetaChannel:
    return connector(meta_sandbox)


def connector(server: EmulatorServer, **options: Any) -> MetaChannel:
    options.setdefault("clock", server.emulator.clock.time)
    return MetaChannel(page_id=DEFAULT_PAGE_ID, page_token=DEFAULT_PAGE_TOKEN, instagram_id=DEFAULT_IG_ID,
                       base_url=server.url, page_size=2,
                       retrier=Retrier(RetryPolicy(max_attempts=3), sleep=lambda s: None, rng=random.Random(1)),
                       **options)


def polled(channel: MetaChannel, which: Channel, cursor: str | None = None) -> list[Interaction]:
    return [i for page in channel.conversation_pages(which, cursor) for i in page.interactions]


def ledger(store: StateStore) -> dict[str, Interaction]:
    with store.transaction() as session:
        rows = [to_interaction(row) for row in session.scalars(select(LedgerRow).order_by(LedgerRow.id))]
    return {i.external_id: i for i in rows}


def reply(meta: MetaEmulator, psid: str, text: str, **options: Any) -> OutboundMessage:
    return OutboundMessage(key=f"reply-{text}", channel=Channel.MESSENGER,
                           conversation_key=f"messenger:{DEFAULT_PAGE_ID}:{psid}", sender=PAGE,
                           recipient=Identity(IdentityKind.MESSENGER, psid), text=text, **options)


def test_poll_translates_both_platforms_and_a_second_poll_stores_nothing(
        meta: MetaEmulator, channel: MetaChannel, store: StateStore) -> None:
    jane, bob = meta.add_person("messenger", "Jane Doe"), meta.add_person("messenger", "Bob Roe")
    insta = meta.add_person("instagram", "Ann Insta")
    first = meta.inbound("messenger", jane, "my order never came",
                         attachments=[{"type": "image", "payload": {"url": "https://cdn.test/receipt.jpg"}}])
    meta.inbound("messenger", bob, "hello")
    meta.inbound("messenger", bob, "anyone?")
    gram = meta.inbound("instagram", insta, "dm on instagram")

    items = {i.external_id: i for i in polled(channel, Channel.MESSENGER)}
    assert len(items) == 3
    jane_item = items[first["id"]]
    assert (jane_item.channel, jane_item.direction, jane_item.text) == (
        Channel.MESSENGER, Direction.INBOUND, "my order never came")
    assert jane_item.sender == Identity(IdentityKind.MESSENGER, jane) and jane_item.sender.display == "Jane Doe"
    assert jane_item.recipient == PAGE
    assert jane_item.conversation_key == f"messenger:{DEFAULT_PAGE_ID}:{jane}"
    assert jane_item.media == ("https://cdn.test/receipt.jpg",)
    [ig_item] = polled(channel, Channel.INSTAGRAM)
    assert (ig_item.external_id, ig_item.sender.kind, ig_item.recipient.value) == (
        gram["id"], IdentityKind.INSTAGRAM, DEFAULT_IG_ID)
    assert ig_item.sender.display == "ann_insta"

    poll = [poll_stream(store, source="meta", stream="messenger", partition=DEFAULT_PAGE_ID,
                        pages=lambda c: channel.conversation_pages(Channel.MESSENGER, c), now=datetime.now(UTC))
            for _ in range(2)]
    assert [(r.stored, r.repeats) for r in poll] == [(3, 0), (0, 3)]
    assert set(ledger(store)) == set(items)


def test_a_quiet_poll_costs_one_call_and_a_new_message_is_found_after_the_cursor(
        meta: MetaEmulator, meta_sandbox: EmulatorServer, channel: MetaChannel) -> None:
    old = meta.inbound("messenger", meta.add_person("messenger", "Old"), "long ago")
    meta.clock.advance(3600)
    first = meta.inbound("messenger", meta.add_person("messenger", "Jane"), "first")
    pages = list(channel.conversation_pages(Channel.MESSENGER, None))
    cursor = pages[-1].cursor
    assert cursor is not None
    meta.calls.clear()
    # Only the overlap before the cursor is read again (the ledger drops it); the hour-old conversation is not.
    assert [i.external_id for i in polled(channel, Channel.MESSENGER, cursor)] == [first["id"]]
    assert meta.total_calls == 1
    meta.clock.advance(3600)
    later = meta.inbound("messenger", meta.add_person("messenger", "Late"), "later")
    assert [i.external_id for i in polled(channel, Channel.MESSENGER, cursor)] == [later["id"], first["id"]]
    assert old["id"] not in {i.external_id for i in polled(channel, Channel.MESSENGER, cursor)}


def test_a_long_conversation_is_read_past_the_expansion_on_its_messages_edge(
        meta: MetaEmulator, channel: MetaChannel) -> None:
    jane = meta.add_person("messenger", "Jane")
    sent = [meta.inbound("messenger", jane, f"line {n}")["id"] for n in range(40)]
    assert {i.external_id for i in polled(channel, Channel.MESSENGER)} == set(sent)


def test_a_signed_webhook_and_the_poll_make_the_same_interaction(
        meta: MetaEmulator, channel: MetaChannel, store: StateStore) -> None:
    jane = meta.add_person("messenger", "Jane")
    message = meta.inbound("messenger", jane, "via webhook",
                           attachments=[{"type": "file", "payload": {"url": "https://cdn.test/a.pdf"}}])
    body = json.dumps(meta.webhooks.payload(message)).encode()
    assert signature_ok(DEFAULT_APP_SECRET, body, "sha256=" + hmac.new(
        DEFAULT_APP_SECRET.encode(), body, hashlib.sha256).hexdigest())
    bare = translate_webhook(json.loads(body), DEFAULT_PAGE_ID, DEFAULT_IG_ID)
    assert bare.interactions[0].sender.display == ""  # a webhook names no one
    batch = translate_webhook(json.loads(body), DEFAULT_PAGE_ID, DEFAULT_IG_ID, names=channel.names)
    [hooked] = batch.interactions
    with store.transaction() as session:
        assert ingest_page(session, batch.interactions, batch.malformed, now=datetime.now(UTC)).stored == 1
    [from_poll] = polled(channel, Channel.MESSENGER)
    same = ("channel", "direction", "external_id", "conversation_key", "sender", "recipient", "text", "media")
    assert {f: getattr(hooked, f) for f in same} == {f: getattr(from_poll, f) for f in same}
    assert hooked.sender.display == from_poll.sender.display == "Jane"
    meta.calls.clear()
    translate_webhook(json.loads(body), DEFAULT_PAGE_ID, DEFAULT_IG_ID, names=channel.names)
    assert meta.total_calls == 0  # a name is read once
    report = poll_stream(store, source="meta", stream="messenger", partition=DEFAULT_PAGE_ID,
                         pages=lambda c: channel.conversation_pages(Channel.MESSENGER, c), now=datetime.now(UTC))
    assert (report.stored, report.repeats) == (0, 1)
    assert list(ledger(store)) == [message["id"]]


def test_signatures_and_the_handshake_refuse_what_meta_did_not_send() -> None:
    body = b'{"object":"page","entry":[]}'
    good = "sha256=" + hmac.new(b"secret", body, hashlib.sha256).hexdigest()
    assert signature_ok("secret", body, good)
    assert not signature_ok("secret", body + b" ", good)
    assert not signature_ok("other", body, good)
    assert not signature_ok("secret", body, None) and not signature_ok("secret", body, "sha1=" + good[7:])
    hello = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1158201444"}
    assert handshake(hello, "tok") == "1158201444"
    assert handshake({**hello, "hub.verify_token": "nope"}, "tok") is None
    assert handshake({**hello, "hub.challenge": "<script>alert(1)</script>"}, "tok") is None
    assert handshake({**hello, "hub.mode": "unsubscribe"}, "tok") is None
    assert handshake(hello, "") is None


def test_hostile_payloads_become_dead_letters_or_are_ignored_never_an_exception() -> None:
    def event(sender: Any, **message: Any) -> dict[str, Any]:
        return {"sender": {"id": sender}, "recipient": {"id": DEFAULT_PAGE_ID}, "timestamp": 1767600000000,
                "message": message}

    payload = {"object": "page", "entry": [
        {"id": DEFAULT_PAGE_ID, "time": 1, "messaging": [
            event("7001", mid="m_ok", text="fine"),
            event("not-a-number", mid="m_bad", text="x"),
            event("7002", text="no mid"),
            event("7003", mid="m_empty"),
            {"sender": {"id": "7004"}, "delivery": {"mids": ["m_ok"]}},
            event("7005", mid="m_gone", is_deleted=True),
            "garbage"]},
        {"id": "999", "messaging": [event("7001", mid="m_other_page", text="not ours")]},
        "junk"]}
    batch = translate_webhook(payload, DEFAULT_PAGE_ID, DEFAULT_IG_ID)
    assert [i.external_id for i in batch.interactions] == ["m_ok"]
    assert len(batch.malformed) == 3
    assert batch.ignored == 5
    assert all("fine" not in m.reason for m in batch.malformed)
    assert translate_webhook([1, 2], DEFAULT_PAGE_ID, None).malformed
    assert translate_webhook({"object": "instagram", "entry": [{"id": DEFAULT_IG_ID, "messaging": [
        event("1", mid="m_ig", text="no ig configured")]}]}, DEFAULT_PAGE_ID, None).ignored == 1


def test_replies_inside_24_hours_then_with_the_human_agent_tag_then_not_at_all(
        meta: MetaEmulator, meta_sandbox: EmulatorServer, channel: MetaChannel) -> None:
    jane = meta.add_person("messenger", "Jane")
    meta.inbound("messenger", jane, "help")
    sent = channel.send(reply(meta, jane, "on it"))
    assert sent.status is ReplyStatus.SENT and sent.echo is not None
    assert sent.echo.direction is Direction.OUTBOUND and sent.echo.external_id == sent.message_id
    meta.clock.advance(3 * DAY)
    channel.send(reply(meta, jane, "still there?"))
    meta.clock.advance(5 * DAY)
    with pytest.raises(Rejected) as closed:
        channel.send(reply(meta, jane, "too late"))
    assert closed.value.code == "outside-window" and "last wrote 8 days ago" in str(closed.value)
    ours = [(m["text"], m["messaging_type"], m["tag"]) for m in meta.messages(jane) if m["is_echo"]]
    assert ours == [("on it", "RESPONSE", None), ("still there?", "MESSAGE_TAG", "HUMAN_AGENT")]

    strict = connector(meta_sandbox, human_agent=False)
    bob = meta.add_person("messenger", "Bob")
    meta.inbound("messenger", bob, "hi")
    meta.clock.advance(2 * DAY)
    with pytest.raises(Rejected, match="human-agent tag, up to 7 days, is off"):
        strict.send(reply(meta, bob, "hello"))
    assert [m["text"] for m in meta.messages(bob)] == ["hi"]


def test_the_windows_are_measured_on_metas_clock_not_ours(meta: MetaEmulator, meta_sandbox: EmulatorServer) -> None:
    skewed = connector(meta_sandbox, clock=lambda: 0.0)  # our clock says 1970: only Meta's `Date` is believed
    jane = meta.add_person("messenger", "Jane")
    meta.inbound("messenger", jane, "help")
    meta.clock.advance(2 * DAY)
    skewed.send(reply(meta, jane, "tagged"))
    meta.clock.advance(6 * DAY)
    with pytest.raises(Rejected, match="last wrote 8 days ago"):
        skewed.send(reply(meta, jane, "too late"))
    assert [(m["text"], m["tag"]) for m in meta.messages(jane) if m["is_echo"]] == [("tagged", "HUMAN_AGENT")]


def test_a_reply_whose_answer_was_lost_goes_out_once(meta: MetaEmulator, meta_sandbox: EmulatorServer,
                                                      channel: MetaChannel) -> None:
    jane = meta.add_person("messenger", "Jane")
    meta.inbound("messenger", jane, "help")
    requests.post(f"{meta_sandbox.url}/_sandbox/faults", json={"kind": "reset", "after": True,
                                                                "path": "/messages$", "method": "POST"}, timeout=5)
    sent = channel.send(reply(meta, jane, "on it"))
    assert sent.found_earlier
    assert [m["text"] for m in meta.messages(jane) if m["is_echo"]] == ["on it"]
    again = channel.send(reply(meta, jane, "on it", uncertain_since=datetime.now(UTC) - timedelta(hours=1),
                               already_sent=(sent.message_id or "",)))
    assert not again.found_earlier  # the same words once more, on purpose: a second message, not the first
    assert [m["text"] for m in meta.messages(jane) if m["is_echo"]] == ["on it", "on it"]


def test_throttling_waits_as_long_as_meta_says(meta: MetaEmulator, channel: MetaChannel) -> None:
    meta.set_page_limit(1)
    polled(channel, Channel.MESSENGER)
    with pytest.raises(RateLimited) as throttled:
        polled(channel, Channel.MESSENGER)
    assert throttled.value.retry_after == 3600
    assert throttled.value.code == "80001"


def test_the_budget_reads_metas_usage_percentages(meta: MetaEmulator, meta_sandbox: EmulatorServer) -> None:
    meta.set_page_limit(10)
    answer = requests.get(f"{meta_sandbox.url}/v21.0/{DEFAULT_PAGE_ID}/conversations",
                          params={"access_token": DEFAULT_PAGE_TOKEN}, timeout=5)
    headroom = read_headroom("meta", answer.headers)
    assert headroom is not None and (headroom.remaining, headroom.limit, headroom.window) == (90, 100, 3600.0)
    throttled = {"X-Business-Use-Case-Usage": json.dumps(
        {DEFAULT_PAGE_ID: [{"type": "pages", "call_count": 100, "estimated_time_to_regain_access": 7}]})}
    spent = read_headroom("meta", throttled)
    assert spent is not None and (spent.remaining, spent.resets_in) == (0, 420.0)
    assert read_headroom("meta", {"X-App-Usage": "not json"}) is None


def test_dead_letters_from_the_poll_name_the_message_not_its_text(meta: MetaEmulator, channel: MetaChannel,
                                                                  store: StateStore) -> None:
    jane = meta.add_person("messenger", "Jane")
    kept = meta.inbound("messenger", jane, "secret words")
    with meta.lock:
        meta.state["messages"][kept["id"]]["from"] = "deleted-user"  # a sender Graph shows without a scoped id
    report = poll_stream(store, source="meta", stream="messenger", partition=DEFAULT_PAGE_ID,
                         pages=lambda c: channel.conversation_pages(Channel.MESSENGER, c), now=datetime.now(UTC))
    assert report.dead_lettered == 1
    with store.transaction() as session:
        [letter] = open_dead_letters(session)
    assert letter.ref == f"messenger:{kept['id']}" and "secret" not in letter.reason
