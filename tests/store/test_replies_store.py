"""The replies table on SQLite and on the local PostgreSQL: once per reply, leases, uncertainty, forward-only statuses."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from crmhub.errors import Timeout
from crmhub.model import Channel, OutboundMessage, ReplyStatus, SentMessage
from crmhub.store import StateStore
from crmhub.store import replies
from crmhub.store.schema import Base, ReplyRow
from crmhub.sync.replies import ReplyPolicy, send_replies

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def row(ref: str, **changes: Any) -> dict[str, Any]:
    return {"crm": "zendesk", "reply_ref": ref, "case_id": "7", "conversation_key": "sms:+14155550100:+14155550123",
            "channel": "sms", "to_kind": "phone", "to_address": "+14155550123", "from_kind": "phone",
            "from_address": "+14155550100", "in_reply_to": None, "text": "Hello", "author": "1003",
            "status": "pending", "channel_status": "", "attempts": 0, "next_attempt_at": NOW, "written_at": NOW,
            "created_at": NOW, "status_at": NOW, **changes}


def test_the_migration_creates_exactly_the_models_tables(store: StateStore) -> None:
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                       Base.metadata)
    assert differences == []


def test_a_reply_is_inserted_once_and_a_claim_leases_it(store: StateStore) -> None:
    with store.transaction() as s:
        assert store_insert(s, [row("c1"), row("c2")]) == ["sms", "sms"]
    with store.transaction() as s:
        assert store_insert(s, [row("c1")]) == []
    with store.transaction() as s:
        claims = replies.claim_due(s, 10, now=NOW, lease=LEASE)
    assert [c.reply_ref for c in claims] == ["c1", "c2"] and not any(c.uncertain for c in claims)
    assert claims[0].message.sender.value == "+14155550100" and claims[0].message.recipient.value == "+14155550123"
    with store.transaction() as s:
        assert replies.claim_due(s, 10, now=NOW + timedelta(minutes=1), lease=LEASE) == []  # leased


def test_a_try_that_may_have_gone_out_is_uncertain_when_claimed_again(store: StateStore) -> None:
    with store.transaction() as s:
        store_insert(s, [row("c1", conversation_key="k"), row("c2", conversation_key="k")])
    with store.transaction() as s:
        first, other = replies.claim_due(s, 10, now=NOW, lease=LEASE)
        replies.mark_sent(s, other.reply_id, "SMother", ReplyStatus.SENT, now=NOW)
        replies.mark_retry(s, first.reply_id, "timed out", retry_at=NOW + timedelta(seconds=30), uncertain=True)
    with store.transaction() as s:
        [again] = replies.claim_due(s, 10, now=NOW + timedelta(minutes=1), lease=LEASE)
    assert again.uncertain and again.message.uncertain_since == NOW
    assert again.message.already_sent == ("SMother",)  # never mistaken for this reply
    with store.transaction() as s:  # a certain failure (a 429) after it keeps the doubt
        replies.mark_retry(s, again.reply_id, "429", retry_at=NOW + timedelta(minutes=2), uncertain=True)
    with store.transaction() as s:
        [third] = replies.claim_due(s, 10, now=NOW + timedelta(minutes=3), lease=LEASE)
        assert third.uncertain
        replies.mark_retry(s, third.reply_id, "429", retry_at=NOW + timedelta(minutes=4), uncertain=False)
    with store.transaction() as s:
        [fourth] = replies.claim_due(s, 10, now=NOW + timedelta(minutes=5), lease=LEASE)
    assert not fourth.uncertain



def test_a_claim_the_daemon_died_holding_costs_no_attempt_but_leaves_the_reply_uncertain(store: StateStore) -> None:
    with store.transaction() as s:
        store_insert(s, [row("c1")])
    for n in range(10):  # daemons that died holding the reply: no outcome recorded, the lease runs out
        with store.transaction() as s:
            [claim] = replies.claim_due(s, 10, now=NOW + n * LEASE, lease=LEASE)
        assert (claim.attempts, claim.claims, claim.uncertain) == (1, n + 1, n > 0)
    with store.transaction() as s:
        replies.mark_retry(s, claim.reply_id, "429", retry_at=NOW + 10 * LEASE, uncertain=True)
    with store.transaction() as s:
        [again] = replies.claim_due(s, 10, now=NOW + 10 * LEASE, lease=LEASE)
    assert (again.attempts, again.claims, again.uncertain) == (2, 1, True)


class _Sender:
    """An SMS sender that records what it was asked to send and answers with a timeout."""

    tracks_delivery = False

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []

    def send(self, message: OutboundMessage) -> SentMessage:
        self.sent.append(message)
        raise Timeout("no answer")


def _die_holding(store_: StateStore, times: int, since: datetime) -> datetime:
    """`times` daemons that claim every due reply and die before recording anything; returns when the last
    lease ran out."""
    for n in range(1, times + 1):
        with store_.transaction() as s:
            assert replies.claim_due(s, 10, now=since + n * LEASE, lease=LEASE)
    return since + (times + 1) * LEASE


def test_a_crash_loop_longer_than_max_attempts_leaves_a_reply_retrying(store: StateStore) -> None:
    policy = ReplyPolicy(max_attempts=3, lease=LEASE)
    with store.transaction() as s:
        store_insert(s, [row("c1")])
    sender = _Sender()
    send_replies(store, {Channel.SMS: sender}, policy, now=NOW)  # timed out: one attempt
    later = _die_holding(store, policy.max_attempts + 1, NOW)
    report = send_replies(store, {Channel.SMS: sender}, policy, now=later)
    assert len(sender.sent) == 2 and sender.sent[-1].uncertain_since == NOW  # looked for on the channel first
    assert (report.retrying, report.dead) == (1, 0)
    with store.transaction() as s:
        [found] = s.scalars(select(ReplyRow))
        assert (found.status, found.attempts, found.claims) == ("sending", 2, 0)
        assert found.next_attempt_at == later + policy.retry_base * 2  # the second attempt's backoff


def test_a_reply_that_stops_the_daemon_every_time_is_dead_after_max_claims(store: StateStore) -> None:
    policy = ReplyPolicy(max_claims=4, lease=LEASE)
    with store.transaction() as s:
        store_insert(s, [row("c1")])
    sender = _Sender()
    report = send_replies(store, {Channel.SMS: sender}, policy, now=_die_holding(store, policy.max_claims, NOW))
    assert sender.sent == [] and report.dead == 1
    with store.transaction() as s:
        [found] = s.scalars(select(ReplyRow))
        assert (found.status, found.attempts) == ("dead", 0)
        assert "the daemon stopped while sending it 4 times in a row" in (found.last_error or "")

def _lease_end(store_: StateStore, reply_id: int) -> datetime:
    with store_.transaction() as s:
        found = s.get(ReplyRow, reply_id)
        assert found is not None
        return found.next_attempt_at.replace(tzinfo=UTC)


def test_a_renewal_extends_only_the_replies_its_claim_is_still_sending(store: StateStore) -> None:
    with store.transaction() as s:
        store_insert(s, [row("c1"), row("c2")])
    with store.transaction() as s:
        first, second = replies.claim_due(s, 10, now=NOW, lease=LEASE)
    ids, renewed = {first.reply_id, second.reply_id}, NOW + 2 * LEASE
    assert first.lease_until == NOW + LEASE
    with store.transaction() as s:
        assert replies.renew(s, {NOW + LEASE: ids}, renewed) == ids
        replies.mark_sent(s, first.reply_id, "SM1", ReplyStatus.SENT, now=NOW)
    with store.transaction() as s:  # sent: no longer held; a stale lease end holds nothing
        assert replies.renew(s, {NOW + LEASE: ids}, NOW + 3 * LEASE) == set()
        assert replies.renew(s, {renewed: ids}, NOW + 3 * LEASE) == {second.reply_id}


class _WaitingSender(_Sender):
    """Answers its first send only once the batch's lease was renewed, after trying to claim as another daemon."""

    def __init__(self, store_: StateStore, claimed_until: datetime) -> None:
        super().__init__()
        self.store, self.claimed_until = store_, claimed_until
        self.others: list[replies.Claim] = []

    def send(self, message: OutboundMessage) -> SentMessage:
        self.sent.append(message)
        [reply_id] = [r.id for r in _rows(self.store) if f"zendesk:{r.reply_ref}" == message.key]
        end = time.monotonic() + 30
        while (renewed := _lease_end(self.store, reply_id)) == self.claimed_until:
            assert time.monotonic() < end, "the lease was never renewed"
            time.sleep(0.02)  # polling for the renewal, with a deadline
        # Another daemon, after the first lease ran out but within the renewed one.
        with self.store.transaction() as s:
            self.others += replies.claim_due(s, 10, now=self.claimed_until + (renewed - self.claimed_until) / 2,
                                             lease=LEASE)
        return SentMessage(f"SM-{message.key}", ReplyStatus.SENT)


def _rows(store_: StateStore) -> list[ReplyRow]:
    with store_.transaction() as s:
        return list(s.scalars(select(ReplyRow)))


def test_a_batch_of_replies_outliving_its_lease_is_not_claimed_by_another_daemon(store: StateStore) -> None:
    lease = timedelta(milliseconds=300)  # short: the test's first send waits for a renewal
    started = time.monotonic()
    with store.transaction() as s:
        store_insert(s, [row("c1"), row("c2")])
    sender = _WaitingSender(store, NOW + lease)
    report = send_replies(store, {Channel.SMS: sender}, ReplyPolicy(lease=lease), now=NOW,
                          clock=lambda: NOW + timedelta(seconds=time.monotonic() - started))
    assert sender.others == [] and len(sender.sent) == 2 and report.sent == 2
    assert {r.status for r in _rows(store)} == {"sent"}


def test_statuses_only_move_forward(store: StateStore) -> None:
    with store.transaction() as s:
        store_insert(s, [row("c1")])
        [claim] = replies.claim_due(s, 10, now=NOW, lease=LEASE)
        replies.mark_sent(s, claim.reply_id, "SM1", ReplyStatus.SENT, now=NOW)
    moves = []
    for status in (ReplyStatus.DELIVERED, ReplyStatus.SENT, ReplyStatus.FAILED, ReplyStatus.DELIVERED):
        with store.transaction() as s:
            moves.append(replies.record_status(s, ["sms", "whatsapp"], "SM1", status, now=NOW) is not None)
    assert moves == [True, False, False, False]
    with store.transaction() as s:
        assert replies.reply_counts(s) == {("zendesk", "sms", "delivered"): 1}
        assert replies.echo_of(s, "sms", "SM1") is not None and not replies.unsettled(s, row("x")["conversation_key"])


def store_insert(session: Any, rows: list[dict[str, Any]]) -> list[str]:
    return replies.insert(session, rows)
