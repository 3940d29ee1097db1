"""The X channel against the emulator: translation, id cursors, paging, errors through the one retry layer."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from crmhub.connectors._retry import Retrier, RetryPolicy
from crmhub.connectors.x import XChannel, XPage
from crmhub.errors import AuthError, ConfigError, PermanentError
from crmhub.identities import x_account
from crmhub.model import Channel, Direction, Interaction
from crmhub.sandbox import EmulatorServer, Fault
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
from crmhub.store.ledger import ledger_counts, open_dead_letters
from crmhub.store.schema import LedgerRow
from crmhub.sync.ingest import poll_stream

ME = DEFAULT_ACCOUNT_ID
MENTIONS = "GET /2/users/<id>/mentions"
DMS = "GET /2/dm_events"


@pytest.fixture
def x(x_sandbox: EmulatorServer) -> XEmulator:
    emulator = x_sandbox.emulator
    assert isinstance(emulator, XEmulator)
    return emulator


def channel(server: EmulatorServer, waits: list[float] | None = None, *, page_size: int = 100,
            **overrides: str) -> XChannel:
    """The connector on the sandbox, its retry waits recorded instead of slept."""
    retrier = Retrier(RetryPolicy(max_attempts=4), sleep=(waits if waits is not None else []).append,
                      rng=random.Random(1))
    options: dict[str, Any] = {"account": DEFAULT_ACCOUNT, "bearer_token": DEFAULT_BEARER_TOKEN,
               "consumer_key": DEFAULT_CONSUMER_KEY, "consumer_secret": DEFAULT_CONSUMER_SECRET,
               "access_token": DEFAULT_ACCESS_TOKEN, "access_token_secret": DEFAULT_ACCESS_TOKEN_SECRET,
               **overrides}
    return XChannel(**options, base_url=server.url, page_size=page_size, retrier=retrier,
                    clock=server.emulator.clock.time)


def items(pages: list[XPage]) -> list[Interaction]:
    return [item for page in pages for item in page.interactions]


def store_dm(x: XEmulator, sender: str, recipient: str, text: str, **wire: Any) -> str:
    """A DM, with fields X sends that the emulator does not model (attachments, participant_ids) added as stored."""
    event_id = x.send_dm(sender, recipient, text)
    with x.lock:
        x.state["dm_events"][event_id].update(wire)
    return event_id


# ---- mentions ----------------------------------------------------------------------------


def test_mentions_become_inbound_interactions_threaded_by_conversation(x: XEmulator,
                                                                       x_sandbox: EmulatorServer) -> None:
    jane, bob = x.add_user("Jane_Doe"), x.add_user("bob")
    root = x.post_mention(jane, "my order never came")
    ours = x.post_mention(ME, "sorry! can you DM us?", in_reply_to=root)  # mentions jane, not us
    follow_up = x.post_mention(jane, "done", in_reply_to=ours)  # X prefixes @crmhub_support: a mention
    other = x.post_mention(bob, "hello")

    pages = list(channel(x_sandbox).mention_pages(None))

    assert [p.last for p in pages] == [True]
    got = {i.external_id: i for i in items(pages)}
    assert set(got) == {root, follow_up, other}
    assert {i.conversation_key for i in got.values()} == {f"x_mention:{root}", f"x_mention:{other}"}
    assert got[follow_up].conversation_key == got[root].conversation_key
    first = got[root]
    assert (first.channel, first.direction) == (Channel.X_MENTION, Direction.INBOUND)
    assert (first.sender, first.sender.display) == (x_account(jane), "jane_doe")
    assert (first.recipient, first.recipient.display) == (x_account(ME), DEFAULT_ACCOUNT)
    stored = {t["id"]: t for t in x.tweets()}
    assert first.text == stored[root]["text"]
    assert first.occurred_at == datetime.fromisoformat(stored[root]["created_at"])
    assert first.raw["author_id"] == jane and first.raw["conversation_id"] == root
    assert pages[-1].cursor == other


def test_our_own_post_at_us_is_outbound_to_the_customer_we_replied_to(x: XEmulator,
                                                                      x_sandbox: EmulatorServer) -> None:
    jane = x.add_user("jane")
    root = x.post_mention(jane, "help")
    ours = x.post_mention(ME, f"@{DEFAULT_ACCOUNT} on it", in_reply_to=root)
    got = {i.external_id: i for i in items(list(channel(x_sandbox).mention_pages(None)))}
    assert got[ours].direction is Direction.OUTBOUND
    assert (got[ours].sender, got[ours].recipient, got[ours].customer) == (x_account(ME), x_account(jane),
                                                                           x_account(jane))
    assert got[ours].conversation_key == f"x_mention:{root}"


def test_mentions_page_newest_first_and_the_cursor_makes_the_next_poll_one_empty_call(
        x: XEmulator, x_sandbox: EmulatorServer) -> None:
    fans = [x.add_user(f"fan{i}") for i in range(3)]
    posted = [x.post_mention(fans[i % 3], f"post {i}") for i in range(12)]
    x_channel = channel(x_sandbox, page_size=5)

    pages = list(x_channel.mention_pages(None))
    assert [len(p.interactions) for p in pages] == [5, 5, 2]
    assert [p.last for p in pages] == [False, False, True]
    assert [i.external_id for i in items(pages)] == posted[::-1]
    assert {p.cursor for p in pages} == {posted[-1]}

    before = x.calls[MENTIONS]
    again = list(x_channel.mention_pages(posted[-1]))
    assert (len(again), again[0].interactions, again[0].last, again[0].cursor) == (1, [], True, posted[-1])
    assert x.calls[MENTIONS] - before == 1

    newer = x.post_mention(fans[0], "one more")
    assert [i.external_id for i in items(list(x_channel.mention_pages(posted[-1])))] == [newer]


def test_a_post_whose_author_cannot_be_resolved_is_malformed_and_the_rest_goes_on(
        x: XEmulator, x_sandbox: EmulatorServer) -> None:
    jane, gone = x.add_user("jane"), x.add_user("gone")
    kept = x.post_mention(jane, "still here")
    lost = x.post_mention(gone, "soon suspended")
    with x.lock:
        del x.state["users"][gone]  # X leaves a suspended author out of includes.users
    [page] = list(channel(x_sandbox).mention_pages(None))
    assert [i.external_id for i in page.interactions] == [kept]
    [bad] = page.malformed
    assert (bad.source, bad.ref) == ("x", f"x_mention:{lost}")
    assert f"author {gone} is not among the answer's users" in bad.reason
    assert bad.raw["id"] == lost
    assert page.cursor == lost  # a malformed item still moves the cursor: it is dead-lettered, not lost


# ---- direct messages --------------------------------------------------------------------


def test_dms_take_direction_from_the_sender_and_the_customer_from_the_conversation(
        x: XEmulator, x_sandbox: EmulatorServer) -> None:
    jane, bob = x.add_user("Jane"), x.add_user("bob")
    asked = x.send_dm(jane, ME, "where is my parcel?")
    answered = x.send_dm(ME, jane, "on its way")
    other = store_dm(x, bob, ME, "", attachments={"media_keys": ["3_1700000000000000001"]})

    page, end = list(channel(x_sandbox).dm_pages(None))  # X's next_token on the last page leads to an empty one

    got = {i.external_id: i for i in page.interactions}
    assert set(got) == {asked, answered, other} and not page.last and page.cursor == other
    assert (end.interactions, end.last, end.cursor) == ([], True, other)
    low, high = sorted((jane, ME), key=int)
    assert {got[asked].conversation_key, got[answered].conversation_key} == {f"x_dm:{low}-{high}"}
    assert (got[asked].channel, got[asked].direction) == (Channel.X_DM, Direction.INBOUND)
    assert (got[asked].sender.display, got[asked].recipient) == ("jane", x_account(ME))
    assert (got[answered].direction, got[answered].sender) == (Direction.OUTBOUND, x_account(ME))
    assert (got[answered].recipient, got[answered].recipient.display) == (x_account(jane), "jane")
    assert got[other].media == ("3_1700000000000000001",) and got[other].customer == x_account(bob)
    assert got[asked].raw["dm_conversation_id"] == f"{low}-{high}"


def test_unusable_dms_are_malformed_with_their_reason(x: XEmulator, x_sandbox: EmulatorServer) -> None:
    jane, bob = x.add_user("jane"), x.add_user("bob")
    empty = x.send_dm(jane, ME, " ")
    group = store_dm(x, ME, jane, "to you both", participant_ids=[ME, jane, bob])
    fine = x.send_dm(bob, ME, "hi")
    page, _ = list(channel(x_sandbox).dm_pages(None))
    assert [i.external_id for i in page.interactions] == [fine]
    reasons = {bad.ref: bad.reason for bad in page.malformed}
    assert reasons == {f"x_dm:{empty}": f"X DM {empty}: empty message: no text and no attachments",
                       f"x_dm:{group}": f"X DM {group}: our message in a conversation without a single other "
                                        "participant"}


def test_dm_paging_stops_at_the_cursor_so_a_quiet_poll_costs_one_call(x: XEmulator,
                                                                       x_sandbox: EmulatorServer) -> None:
    jane = x.add_user("jane")
    sent = [x.send_dm(jane, ME, f"message {i}") for i in range(7)]
    x_channel = channel(x_sandbox, page_size=3)

    first = list(x_channel.dm_pages(None))
    # X hands out a next_token on the oldest page too; the empty page it leads to ends the poll.
    assert [len(p.interactions) for p in first] == [3, 3, 1, 0] and first[-1].cursor == sent[-1]

    before = x.calls[DMS]
    quiet = list(x_channel.dm_pages(sent[-1]))
    assert (len(quiet), quiet[0].interactions, quiet[0].last, quiet[0].cursor) == (1, [], True, sent[-1])
    assert x.calls[DMS] - before == 1

    newer = [x.send_dm(jane, ME, f"later {i}") for i in range(4)]
    before = x.calls[DMS]
    pages = list(x_channel.dm_pages(sent[-1]))
    assert [i.external_id for i in items(pages)] == newer[::-1]
    assert [p.last for p in pages] == [False, True] and pages[-1].cursor == newer[-1]
    assert x.calls[DMS] - before == 2  # the second page reached the cursor: no third call


# ---- errors through the one retry layer -------------------------------------------------


def test_a_429_is_waited_out_until_the_rate_limit_reset_then_the_poll_goes_on(
        x: XEmulator, x_sandbox: EmulatorServer) -> None:
    jane = x.add_user("jane")
    x.send_dm(jane, ME, "hello")
    x.faults.add(Fault("rate_limit", path="/2/dm_events", retry_after=120, times=1))
    waits: list[float] = []
    assert len(items(list(channel(x_sandbox, waits).dm_pages(None)))) == 1
    assert len(waits) == 1 and 119 <= waits[0] <= 135  # reset - now (sandbox clock), plus a little jitter


def test_a_server_error_is_retried(x: XEmulator, x_sandbox: EmulatorServer) -> None:
    x.post_mention(x.add_user("jane"), "hi")
    x.faults.add(Fault("server_error", path="/mentions", times=2))
    waits: list[float] = []
    assert len(items(list(channel(x_sandbox, waits).mention_pages(None)))) == 1
    assert len(waits) == 2


def test_the_usage_cap_fails_at_once_instead_of_waiting(x: XEmulator, x_sandbox: EmulatorServer) -> None:
    waits: list[float] = []
    x_channel = channel(x_sandbox, waits)
    x_channel.account()
    x.faults.add(Fault("daily_limit", path="/mentions", times=None))
    with pytest.raises(PermanentError, match="usage cap") as caught:
        list(x_channel.mention_pages(None))
    assert caught.value.code == "usage-capped" and waits == []


def test_wrong_credentials_are_an_auth_error_at_once(x_sandbox: EmulatorServer) -> None:
    waits: list[float] = []
    with pytest.raises(AuthError, match="HTTP 401"):
        list(channel(x_sandbox, waits, access_token_secret="wrong").dm_pages(None))
    assert waits == []


def test_a_token_of_another_account_is_a_config_error(x_sandbox: EmulatorServer) -> None:
    with pytest.raises(ConfigError, match="channels.x.account: 'someone_else' but the access token belongs to "
                                          f"@{DEFAULT_ACCOUNT}"):
        list(channel(x_sandbox, account="@Someone_Else").mention_pages(None))


# ---- into the ledger ----------------------------------------------------------------------


def test_every_item_is_stored_once_however_often_it_is_polled(x: XEmulator, x_sandbox: EmulatorServer,
                                                              store: StateStore) -> None:
    jane, gone = x.add_user("jane"), x.add_user("gone")
    posts = [x.post_mention(jane, f"post {i}") for i in range(7)]
    lost = x.post_mention(gone, "soon suspended")
    with x.lock:
        del x.state["users"][gone]
    dms = [x.send_dm(jane, ME, f"dm {i}") for i in range(4)] + [x.send_dm(ME, jane, "reply")]
    x_channel = channel(x_sandbox, page_size=5)
    now = x.clock.now()

    def poll() -> tuple[int, int]:
        mentions = poll_stream(store, source="x", stream="mentions", partition=x_channel.account_handle,
                               pages=x_channel.mention_pages, now=now)
        direct = poll_stream(store, source="x", stream="dm_events", partition=x_channel.account_handle,
                             pages=x_channel.dm_pages, now=now)
        return mentions.stored + direct.stored, mentions.pages + direct.pages

    assert poll() == (12, 4)  # mentions on two pages of 5, DMs on one and the empty page X's next_token leads to
    assert poll() == (0, 2)  # one call per stream, nothing new
    later = x.post_mention(jane, "and again")
    assert poll() == (1, 2)

    with store.transaction() as session:
        assert ledger_counts(session) == {"x_mention": 8, "x_dm": 5}
        keys = [tuple(row) for row in session.execute(select(LedgerRow.channel, LedgerRow.external_id))]
        dead = open_dead_letters(session)
    assert sorted(keys) == sorted([*(("x_mention", p) for p in [*posts, later]), *(("x_dm", d) for d in dms)])
    assert [(d.source, d.ref) for d in dead] == [("x", f"x_mention:{lost}")]
