"""Agent replies on their way out: insert once, claim with a lease, record what the channel did.

Like the outbox, sending claims due rows in a short transaction (`FOR UPDATE
SKIP LOCKED` on PostgreSQL), talks to the channel outside any transaction
and records the outcome afterwards. A claim leaves the row `sending`; it
goes back to `pending` only when the try certainly sent nothing (a 429, a
refused login). A row found `sending` when claimed again was left by a try
whose outcome is unknown (a timeout, a daemon killed mid-call): the claim
says so (`Claim.uncertain`), and the sender checks the channel before
sending again. Statuses only move forward (`REPLY_STATUS_RANK`).

As in the outbox, a claim is not an attempt: `claims` counts the claims
since the last recorded outcome, and `attempts` goes up only when an
outcome is recorded (`mark_sent`, `mark_retry`, `mark_dead`). A daemon that
died holding a reply leaves it uncertain (still `sending`) but costs it no
attempt and no backoff.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, exists, func, select, update
from sqlalchemy.orm import Session

from crmhub.model import REPLY_STATUS_RANK, Channel, Direction, Identity, IdentityKind, OutboundMessage, ReplyStatus
from crmhub.store.ledger import insert_ignoring_conflicts, latest_inbound
from crmhub.store.outbox import renew_claimed
from crmhub.store.schema import LedgerRow, ReplyRow
from crmhub.store.sets import among
from crmhub.store.text import storable

OPEN = (ReplyStatus.PENDING.value, ReplyStatus.SENDING.value)
_REPLIES = cast(Table, ReplyRow.__table__)  # for Core statements
FAILED = (ReplyStatus.FAILED.value, ReplyStatus.DEAD.value)
# Failed replies not written back yet, as `ix_replies_failures` (partial) says it word for word: a planner
# uses a partial index only for a condition it can prove from the query's text, so the values are inline.
NOT_NOTED = and_(ReplyRow.status.in_(bindparam("failed_states", FAILED, expanding=True, literal_execute=True)),
                 ReplyRow.noted_at.is_(None))
# A reply an agent wrote in crmhub's panel rather than in the CRM (`crmhub.agent_api`): its sent copy is written
# into every CRM's history, the agent's own included, since no CRM holds it yet.
PANEL_REF = "panel:"


def written_in_crm(reply_ref: str) -> bool:
    """Whether the reply is already on its case in the CRM it came from (so its echo is not written there)."""
    return not reply_ref.startswith(PANEL_REF)


SURVEY_PREFIX = "survey:"  # the reply_ref of a survey question (`crmhub.store.surveys`): survey:<id>
CODE_PREFIX = "code:"  # the reply_ref of a one-time code's message (`crmhub.store.codes`): code:<suggestion>:<n>

@dataclass(frozen=True)
class Claim:
    """A claimed reply: the row's id and the message to send; `uncertain` when an earlier try may have gone out."""

    reply_id: int
    crm: str
    reply_ref: str
    attempts: int  # this try's number, if it gets an outcome (the tries before it that got one, plus one)
    message: OutboundMessage
    claims: int = 1  # claims since the last outcome, this one included (more than one: the daemon died holding it)
    lease_until: datetime | None = None  # the end of this claim's lease (`renew`)

    @property
    def uncertain(self) -> bool:
        return self.message.uncertain_since is not None


def insert(session: Session, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Insert new replies; one already known (same CRM and reply) is left as it is. Returns the new ones' channels."""
    if not rows:
        return []
    statement = insert_ignoring_conflicts(session, ReplyRow, [storable(row) for row in rows], ("crm", "reply_ref"))
    return [channel for _, channel in session.execute(statement.returning(ReplyRow.id, ReplyRow.channel))]


def claim_due(session: Session, limit: int, *, now: datetime, lease: timedelta) -> list[Claim]:
    """Claim up to `limit` due replies for `lease`, oldest first."""
    query = (select(ReplyRow).where(ReplyRow.status.in_(OPEN), ReplyRow.next_attempt_at <= now)
             .order_by(ReplyRow.next_attempt_at, ReplyRow.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claims = []
    rows = list(session.scalars(query))
    # When each customer last wrote (one query for the batch): channels with a session window need it.
    latest = latest_inbound(session, {row.conversation_key for row in rows})
    for row in rows:
        uncertain = row.status == ReplyStatus.SENDING.value and row.claimed_at is not None
        row.status, row.claims, row.next_attempt_at = ReplyStatus.SENDING.value, row.claims + 1, now + lease
        row.claimed_at = row.claimed_at or now
        others = _sent_in_conversation(session, row) if uncertain else ()
        message = replace(_message(row, uncertain, others), asked_at=now,
                          **_customer_side(latest.get(row.conversation_key)))
        claims.append(Claim(row.id, row.crm, row.reply_ref, row.attempts + 1, message, claims=row.claims,
                            lease_until=row.next_attempt_at))
    return claims


def renew(session: Session, held: Mapping[datetime, Collection[int]], until: datetime) -> set[int]:
    """Extend the lease of replies one claim still holds (`sending`, with the lease end it set) to `until`.

    As `outbox.renew`: one UPDATE; a reply another daemon claimed after the lease lapsed is left alone.
    """
    return renew_claimed(session, _REPLIES, ReplyRow.status == ReplyStatus.SENDING.value, held, until)


def _customer_side(last: Any) -> dict[str, Any]:
    """What the conversation's newest inbound ledger row tells a send: when, who, which language."""
    if last is None:
        return {}
    return {"last_inbound_at": last.occurred_at, "customer_name": last.customer_name or "", "language": last.language}


def _sent_in_conversation(session: Session, row: ReplyRow) -> tuple[str, ...]:
    """Message ids of the conversation's other sent replies (an uncertain check must not take one for this)."""
    query = select(ReplyRow.channel_message_id).where(ReplyRow.conversation_key == row.conversation_key,
                                                      ReplyRow.id != row.id, ReplyRow.channel_message_id.is_not(None))
    return tuple(str(m) for m in session.scalars(query))


def _message(row: ReplyRow, uncertain: bool, already_sent: tuple[str, ...] = ()) -> OutboundMessage:
    return OutboundMessage(
        key=f"{row.crm}:{row.reply_ref}", channel=Channel(row.channel), conversation_key=row.conversation_key,
        sender=Identity(IdentityKind(row.from_kind), row.from_address),
        recipient=Identity(IdentityKind(row.to_kind), row.to_address), text=row.text, in_reply_to=row.in_reply_to,
        uncertain_since=row.claimed_at if uncertain else None, already_sent=already_sent, case_id=row.case_id,
        survey=row.reply_ref.startswith(SURVEY_PREFIX), code=row.reply_ref.startswith(CODE_PREFIX))


def mark_sent(session: Session, reply_id: int, message_id: str | None, status: ReplyStatus, *, now: datetime,
              channel_status: str = "") -> None:
    row = session.get(ReplyRow, reply_id)
    if row is None:
        return
    _answered(row)
    row.channel_message_id, row.sent_at, row.last_error = message_id, now, None
    _move(row, status if REPLY_STATUS_RANK[status] >= REPLY_STATUS_RANK[ReplyStatus.SENT] else ReplyStatus.SENT,
          now, channel_status)


def mark_held(session: Session, reply_id: int, message_id: str | None, *, now: datetime) -> None:
    """Something stood in for the reply (`message_id`, e.g. a template): hold it until the customer writes back.

    `sent_at` is when the stand-in went: the customer's next message must be newer.
    """
    row = session.get(ReplyRow, reply_id)
    if row is None:
        return
    _answered(row)
    row.channel_message_id, row.sent_at, row.last_error = message_id, now, None
    _move(row, ReplyStatus.HELD, now, "")


def release_held(session: Session, *, now: datetime) -> list[tuple[str, str]]:
    """Held replies whose customer wrote in the conversation after the stand-in: due now, as a fresh send.

    One statement for all of them. The stand-in's message id is dropped (its delivery news must not move the
    reply) and the claim window starts again, so a lost answer is looked for after the stand-in only.
    Returns (crm, channel) of each reply released.
    """
    wrote_back = exists().where(LedgerRow.conversation_key == ReplyRow.conversation_key,
                                LedgerRow.direction == Direction.INBOUND.value,
                                LedgerRow.occurred_at > ReplyRow.sent_at)
    statement = (update(ReplyRow).where(ReplyRow.status == ReplyStatus.HELD.value, wrote_back)
                 .values(status=ReplyStatus.PENDING.value, next_attempt_at=now, claimed_at=None, claims=0,
                         channel_message_id=None, sent_at=None, channel_status="", status_at=now)
                 .returning(ReplyRow.crm, ReplyRow.channel).execution_options(synchronize_session=False))
    return [(crm, channel) for crm, channel in session.execute(statement)]


def give_up_held(session: Session, reason: str, *, now: datetime, older_than: datetime) -> list[tuple[str, str]]:
    """Held replies whose stand-in went before `older_than`: dead (noted on the case once, as any dead reply)."""
    statement = (update(ReplyRow).where(ReplyRow.status == ReplyStatus.HELD.value, ReplyRow.sent_at < older_than)
                 .values(status=ReplyStatus.DEAD.value, last_error=reason, status_at=now)
                 .returning(ReplyRow.crm, ReplyRow.channel).execution_options(synchronize_session=False))
    return [(crm, channel) for crm, channel in session.execute(statement)]


def mark_retry(session: Session, reply_id: int, error: str, *, retry_at: datetime, uncertain: bool) -> None:
    """Try again at `retry_at`; `uncertain`: a try may have gone out (the row stays `sending`, checked first)."""
    row = session.get(ReplyRow, reply_id)
    if row is None:
        return
    _answered(row)
    row.last_error, row.next_attempt_at = error, retry_at
    if not uncertain:
        row.status = ReplyStatus.PENDING.value


def mark_dead(session: Session, reply_id: int, error: str, *, now: datetime, attempted: bool = True) -> None:
    """Dead for good; `attempted`: False when this claim made no try (e.g. too many claims cut short)."""
    row = session.get(ReplyRow, reply_id)
    if row is not None:
        if attempted:
            _answered(row)
        row.last_error = error
        _move(row, ReplyStatus.DEAD, now, row.channel_status)


def _answered(row: ReplyRow) -> None:
    """The claim's outcome is recorded: one more attempt, and no claim cut short since."""
    row.attempts, row.claims = row.attempts + 1, 0


def record_status(session: Session, channels: Sequence[str], message_id: str, status: ReplyStatus, *,
                  now: datetime, channel_status: str = "", error: str | None = None) -> ReplyRow | None:
    """Move the reply sent as `message_id` on one of `channels` to `status` if that is forward.

    Returns the row when it moved, None when it did not (unknown message, a repeat, or backwards).
    """
    row = session.scalar(select(ReplyRow).where(ReplyRow.channel.in_(list(channels)),
                                                ReplyRow.channel_message_id == message_id))
    if row is None or not advances(ReplyStatus(row.status), status):
        return None
    if error:
        row.last_error = error
    _move(row, status, now, channel_status)
    return row


def advances(current: ReplyStatus, new: ReplyStatus) -> bool:
    """Forward only: delivered never becomes sent again, and failed/dead/delivered are final.

    A held reply is not moved by news of what stood in for it (the template's delivery).
    """
    return not current.final and current is not ReplyStatus.HELD and REPLY_STATUS_RANK[new] > REPLY_STATUS_RANK[current]


def _move(row: ReplyRow, status: ReplyStatus, now: datetime, channel_status: str) -> None:
    row.status, row.status_at = status.value, now
    if channel_status:
        row.channel_status = channel_status[:32]


def to_check(session: Session, channels: Sequence[str], limit: int, *, now: datetime,
             every: timedelta, give_up_after: timedelta) -> list[ReplyRow]:
    """Sent replies of `channels` whose delivery status is worth asking for again (not heard of for `every`)."""
    if not channels:
        return []
    query = (select(ReplyRow).where(ReplyRow.status == ReplyStatus.SENT.value, ReplyRow.channel.in_(channels),
                                    ReplyRow.channel_message_id.is_not(None), ReplyRow.status_at <= now - every,
                                    ReplyRow.sent_at >= now - give_up_after)
             .order_by(ReplyRow.status_at, ReplyRow.id).limit(limit))
    return list(session.scalars(query))


def touch(session: Session, reply_id: int, *, now: datetime) -> None:
    """Asked the channel and nothing changed: ask again `every` from now."""
    row = session.get(ReplyRow, reply_id)
    if row is not None:
        row.status_at = now


def failures_to_note(session: Session, crm: str, limit: int) -> list[ReplyRow]:
    """Failed or dead replies of `crm` not yet written back onto their case."""
    query = (select(ReplyRow).where(ReplyRow.crm == crm, NOT_NOTED)
             .order_by(ReplyRow.id).limit(limit))
    return list(session.scalars(query))


def mark_noted(session: Session, reply_id: int, *, now: datetime, error: str | None = None) -> None:
    row = session.get(ReplyRow, reply_id)
    if row is not None:
        row.noted_at = now
        if error and not row.last_error:
            row.last_error = error


def echoes_of(session: Session, messages: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
    """`echo_of` for a batch: (channel, message id) -> (crm, reply_ref) of the reply it is the sent copy of."""
    if not messages:
        return {}
    channels, ids = sorted({channel for channel, _ in messages}), sorted({message_id for _, message_id in messages})
    query = select(ReplyRow.channel, ReplyRow.channel_message_id, ReplyRow.crm, ReplyRow.reply_ref).where(
        ReplyRow.channel.in_(channels), among(ReplyRow.channel_message_id, ids))  # ix_replies_message
    wanted = set(messages)
    return {(channel, message_id): (crm, ref) for channel, message_id, crm, ref in session.execute(query)
            if (channel, message_id) in wanted}


def unsettled_of(session: Session, conversation_keys: Sequence[str]) -> set[str]:
    """Which of the conversations have a reply that may have gone out without its message id known yet."""
    if not conversation_keys:
        return set()
    query = select(ReplyRow.conversation_key).where(among(ReplyRow.conversation_key, sorted(set(conversation_keys))),
                                                    ReplyRow.status == ReplyStatus.SENDING.value).distinct()
    return set(session.scalars(query))


def echo_of(session: Session, channel: str, message_id: str) -> tuple[str, str] | None:
    """(crm, reply_ref) of the reply the channel message `message_id` is the sent copy of, if any."""
    return echoes_of(session, [(channel, message_id)]).get((channel, message_id))


def unsettled(session: Session, conversation_key: str) -> bool:
    """Whether a reply of the conversation may have gone out without its message id known yet."""
    return conversation_key in unsettled_of(session, [conversation_key])


def reply_counts(session: Session) -> dict[tuple[str, str, str], int]:
    """Replies per (crm, channel, status)."""
    query = (select(ReplyRow.crm, ReplyRow.channel, ReplyRow.status, func.count())
             .group_by(ReplyRow.crm, ReplyRow.channel, ReplyRow.status))
    return {(crm, channel, status): count for crm, channel, status, count in session.execute(query)}


def latest_of_conversation(session: Session, conversation_key: str) -> LedgerRow | None:
    """The conversation's newest ledger item from the customer (else its newest item at all)."""
    for inbound_only in (True, False):
        query = select(LedgerRow).where(LedgerRow.conversation_key == conversation_key)
        if inbound_only:
            query = query.where(LedgerRow.direction == "inbound")
        found = session.scalar(query.order_by(LedgerRow.occurred_at.desc(), LedgerRow.id.desc()).limit(1))
        if found is not None:
            return found
    return None
