"""Tables of the state store (SQLite by default, PostgreSQL in production).

Alembic migrations in `crmhub/store/migrations/` create exactly these; a
test checks the two agree, so a model change without a migration fails CI.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from datetime import UTC

from sqlalchemy import (
    JSON, BigInteger, DateTime, Dialect, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint, false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Constraint names fixed by convention, so migrations are the same on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER keys


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, also on SQLite (which stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("crmhub stores only timezone-aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UtcDateTime()}


class LedgerRow(Base):
    """Every interaction a channel reported, once (unique on channel + external id)."""

    __tablename__ = "ledger"
    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_ledger_channel_external_id"),
        Index("ix_ledger_conversation", "conversation_key"),
        Index("ix_ledger_person", "person_id"),
        # Routing's queue (`ledger.unprocessed`): only the rows not yet processed, however long the history.
        Index("ix_ledger_unprocessed", "id", sqlite_where=text("processed_at IS NULL"),
              postgresql_where=text("processed_at IS NULL")),
        Index("ix_ledger_occurred", "occurred_at"),  # a support report's window (`crmhub.report`)
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(128))
    direction: Mapped[str] = mapped_column(String(8))
    conversation_key: Mapped[str] = mapped_column(String(255))
    sender_kind: Mapped[str] = mapped_column(String(8))
    sender_value: Mapped[str] = mapped_column(String(255))
    sender_display: Mapped[str] = mapped_column(String(255), default="")
    recipient_kind: Mapped[str] = mapped_column(String(8))
    recipient_value: Mapped[str] = mapped_column(String(255))
    recipient_display: Mapped[str] = mapped_column(String(255), default="")
    customer_name: Mapped[str] = mapped_column(String(255), default="", server_default="")  # as the channel shows it
    text: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)  # detected at routing; None: unknown
    media: Mapped[list[Any]] = mapped_column(default=list)
    call: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    occurred_at: Mapped[datetime]
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), nullable=True)
    ingested_at: Mapped[datetime]
    processed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class CursorRow(Base):
    """Where a source's polling stopped: one row per (source, stream, partition)."""

    __tablename__ = "cursors"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    partition: Mapped[str] = mapped_column(String(128), primary_key=True, default="")
    value: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime]


class PersonRow(Base):
    """A customer, as the identity graph has joined them."""

    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime]
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), nullable=True)
    # crmhub's key of the contact it creates for the person, fixed when first needed (`graph.contact_keys`)
    key: Mapped[str | None] = mapped_column(String(64), nullable=True)


class IdentityRow(Base):
    """A normalised identity and the person it belongs to."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_identities_kind_value"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))
    value: Mapped[str] = mapped_column(String(255))
    display: Mapped[str] = mapped_column(String(255), default="")
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    # the time of the item that last changed `display` (an X account's handle): an older item never changes it back
    display_at: Mapped[datetime | None] = mapped_column(nullable=True)


class CrmLinkRow(Base):
    """A person's record in one CRM."""

    __tablename__ = "crm_links"
    __table_args__ = (UniqueConstraint("crm", "record_id", name="uq_crm_links_crm_record"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    crm: Mapped[str] = mapped_column(String(16))
    object_type: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    preferred: Mapped[bool] = mapped_column(default=False)  # an admin's pick in a conflict (`crmhub conflicts`)


class LinkEventRow(Base):
    """The identity graph's append-only log: every join, split and record link move, with evidence and actor.

    `action` is join, split, link_record or unlink_record; `kept` the person
    that stays, `absorbed` the one joined into it (a split gives it back);
    `concerning` the identity or CRM record the evidence is about;
    `evidence` channel, crm_field, statement, agent, admin, crm_merge or
    crm_delete; `undoes` the join a split undid. Rows are never updated.
    """

    __tablename__ = "link_events"
    __table_args__ = (Index("ix_link_events_kept", "kept_person_id"),
                      Index("ix_link_events_absorbed", "absorbed_person_id"),
                      Index("ix_link_events_undoes", "undoes"))

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(16))
    kept_person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), nullable=True)
    absorbed_person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), nullable=True)
    concerning: Mapped[str] = mapped_column(String(300), default="")
    evidence: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(255))
    undoes: Mapped[int | None] = mapped_column(ForeignKey("link_events.id"), nullable=True)


class LinkEventMoveRow(Base):
    """A row a link event moved from one person to another (`table`: identities, crm_links or ledger).

    Filled by one INSERT ... SELECT per table as persons join, so an undo
    knows exactly what moved, while lookups keep reading `person_id` directly.
    """

    __tablename__ = "link_event_rows"

    event_id: Mapped[int] = mapped_column(ForeignKey("link_events.id"), primary_key=True)
    table: Mapped[str] = mapped_column(String(16), primary_key=True)
    row_id: Mapped[int] = mapped_column(Id, primary_key=True)


class ConflictRow(Base):
    """Several records of one CRM turned out to be one person: an admin decides, crmhub never merges them.

    Until resolved, crmhub writes to the oldest record (or the one an admin picked).
    """

    __tablename__ = "conflicts"
    __table_args__ = (UniqueConstraint("crm", "person_id", name="uq_conflicts_crm_person"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    crm: Mapped[str] = mapped_column(String(16))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    record_ids: Mapped[list[Any]] = mapped_column(default=list)  # oldest first
    primary_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    detected_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    resolution: Mapped[str | None] = mapped_column(String(255), nullable=True)


class MirrorRow(Base):
    """The local copy of one CRM contact (so matching costs no API call)."""

    __tablename__ = "mirror"
    __table_args__ = (UniqueConstraint("crm", "record_id", name="uq_mirror_crm_record"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    crm: Mapped[str] = mapped_column(String(16))
    object_type: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[str] = mapped_column(String(64))
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime | None] = mapped_column(nullable=True)
    modified_at: Mapped[datetime]


class MirrorIdentityRow(Base):
    """Index of the mirror by normalised identity."""

    __tablename__ = "mirror_identities"
    __table_args__ = (
        UniqueConstraint("mirror_id", "kind", "value", name="uq_mirror_identities_entry"),
        Index("ix_mirror_identities_lookup", "crm", "kind", "value"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    mirror_id: Mapped[int] = mapped_column(ForeignKey("mirror.id", ondelete="CASCADE"))
    crm: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(8))
    value: Mapped[str] = mapped_column(String(255))


class ThreadRow(Base):
    """The case/ticket a conversation threads into, per CRM.

    `seq` counts the cases opened for the conversation, so each has a unique
    external key (`<conversation>#<seq>`) that makes case creation an upsert.
    `closed_at` is the current case's close time as the CRM reported it (None:
    open), `closed_final` says the CRM will not reopen it, and `state_at` is
    the CRM's modification time of the last case state applied, so a state
    read before crmhub reopened the case never closes it again.
    """

    __tablename__ = "threads"
    __table_args__ = (
        UniqueConstraint("crm", "conversation_key", name="uq_threads_crm_conversation"),
        Index("ix_threads_record", "crm", "record_id"),  # a reply's case -> its conversation
        Index("ix_threads_opened", "crm", "opened_at"),  # where a CRM's first reply read starts
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    crm: Mapped[str] = mapped_column(String(16))
    conversation_key: Mapped[str] = mapped_column(String(255))
    seq: Mapped[int] = mapped_column(default=1)
    record_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    queue: Mapped[str] = mapped_column(String(64), default="")
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    closed_final: Mapped[bool] = mapped_column(default=False, server_default=false())
    state_at: Mapped[datetime | None] = mapped_column(nullable=True)


class RouteDecisionRow(Base):
    """The routing decision of an interaction, with the rule that won and those tried."""

    __tablename__ = "route_decisions"

    interaction_id: Mapped[int] = mapped_column(ForeignKey("ledger.id"), primary_key=True)
    rule: Mapped[str] = mapped_column(String(128))
    targets: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tried: Mapped[list[Any]] = mapped_column(default=list)
    decided_at: Mapped[datetime]


JOB_REF_LENGTH = 255  # a few job ids (a lost answer can leave more than one candidate)


class OutboxRow(Base):
    """One (interaction, CRM) write; unique idempotency key per CRM.

    `priority` is a `crmhub.model.WritePriority` (lower goes first); claims go
    by it, then by due time, along `ix_outbox_claim`, which holds the pending
    rows only: done rows (the history) are reached by their interaction
    (`ix_outbox_interaction_id`) or key, never by a slice of a status.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("crm", "idempotency_key", name="uq_outbox_crm_key"),
        Index("ix_outbox_claim", "crm", "priority", "next_attempt_at", sqlite_where=text("status = 'pending'"),
              postgresql_where=text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(160))
    interaction_id: Mapped[int] = mapped_column(ForeignKey("ledger.id"), index=True)
    crm: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(8), default="pending")
    priority: Mapped[int] = mapped_column(default=2, server_default=text("2"))  # WritePriority.FOLLOW_UP
    attempts: Mapped[int] = mapped_column(default=0)  # tries that got an answer (or timed out)
    claims: Mapped[int] = mapped_column(default=0, server_default=text("0"))  # claims since the last answer
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    contact_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the record it landed on
    relink: Mapped[bool] = mapped_column(default=False)  # re-written after a merge: move it to the primary record
    # A relink after an undone join (`crmhub links undo`): the wrong record the activity leaves, where the CRM
    # keeps old associations (HubSpot) and they must go.
    detach_from: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # An asynchronous bulk job the CRM accepted with this write, stored as submitted (the connector's reference):
    # the next attempt waits for it instead of sending the write again.
    job_ref: Mapped[str | None] = mapped_column(String(JOB_REF_LENGTH), nullable=True)
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ApiBudgetRow(Base):
    """What a CRM's API budget let through at its last delivery run (for `crmhub status` and metrics)."""

    __tablename__ = "api_budgets"

    crm: Mapped[str] = mapped_column(String(16), primary_key=True)
    max_priority: Mapped[int]  # WritePriority: rows ranked after it are held
    daily_remaining: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    daily_limit: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reserve: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime]


class ApiBudgetSlotRow(Base):
    """Calls several daemons reserved from one system's shared pace in one slot of its window (PostgreSQL only).

    A window of `seconds` is cut into slots (`crmhub.store.budgets.SLOTS`); a
    reservation fits when the last slots together stay within the pace, so any
    stretch of `seconds` holds no more calls than configured, whichever daemon made them.
    """

    __tablename__ = "api_budget_slots"

    system: Mapped[str] = mapped_column(String(16), primary_key=True)
    seconds: Mapped[int] = mapped_column(Integer, primary_key=True)  # the window's length
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch seconds // the slot's length
    used: Mapped[int]  # calls reserved in it


class DeadLetterRow(Base):
    """An item that failed for good, with the reason and the payload to replay."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    resolution: Mapped[str | None] = mapped_column(String(16), nullable=True)


# Failed replies not yet written back onto their case: the predicate of the partial `ix_replies_failures`.
NOT_NOTED_SQL = "status IN ('failed', 'dead') AND noted_at IS NULL"


class ReplyRow(Base):
    """An agent's reply from a CRM, on its way out over the customer's channel (unique per CRM and reply).

    Sending works like the outbox: a claim pushes `next_attempt_at` a lease
    ahead; `claimed_at` is when the first try began, the window an uncertain
    retry searches the channel for a copy already sent. `text` is what the
    customer gets: stored to send it, never logged.
    """

    __tablename__ = "replies"
    __table_args__ = (
        UniqueConstraint("crm", "reply_ref", name="uq_replies_crm_ref"),
        Index("ix_replies_due", "status", "next_attempt_at"),
        Index("ix_replies_message", "channel", "channel_message_id"),
        Index("ix_replies_conversation", "conversation_key"),
        Index("ix_replies_sent", "status", "sent_at"),
        Index("ix_replies_written", "written_at"),  # a support report's window (`crmhub.report`)  # recent sent replies whose delivery is unsettled
        # Failed replies not written back yet (`crmhub.store.replies.NOT_NOTED`): few, however many were sent.
        Index("ix_replies_failures", "crm", "id", sqlite_where=text(NOT_NOTED_SQL),
              postgresql_where=text(NOT_NOTED_SQL)),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    crm: Mapped[str] = mapped_column(String(16))
    reply_ref: Mapped[str] = mapped_column(String(128))
    case_id: Mapped[str] = mapped_column(String(64))
    conversation_key: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(16))
    to_kind: Mapped[str] = mapped_column(String(8))
    to_address: Mapped[str] = mapped_column(String(255))
    from_kind: Mapped[str] = mapped_column(String(8))
    from_address: Mapped[str] = mapped_column(String(255))
    in_reply_to: Mapped[str | None] = mapped_column(String(128), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    channel_status: Mapped[str] = mapped_column(String(32), default="")
    attempts: Mapped[int] = mapped_column(default=0)  # tries that got an answer (or timed out)
    claims: Mapped[int] = mapped_column(default=0, server_default="0")  # claims since the last answer
    next_attempt_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    channel_message_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    written_at: Mapped[datetime]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    status_at: Mapped[datetime]
    noted_at: Mapped[datetime | None] = mapped_column(nullable=True)


class LinkSuggestionRow(Base):
    """An identity a customer claimed in a message: a link an agent or admin may confirm, never a join by itself.

    One per (sender identity, claimed identity), whatever its status: a claim
    repeated adds nothing, and a rejected one is never suggested again. The
    persons are those of the time of the claim; confirming joins whoever
    holds the two identities then.
    """

    __tablename__ = "link_suggestions"
    __table_args__ = (
        UniqueConstraint("sender_kind", "sender_value", "claimed_kind", "claimed_value",
                         name="uq_link_suggestions_pair"),
        Index("ix_link_suggestions_status", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    interaction_id: Mapped[int] = mapped_column(ForeignKey("ledger.id"), index=True)  # the message that claimed it
    sender_kind: Mapped[str] = mapped_column(String(8))
    sender_value: Mapped[str] = mapped_column(String(255))
    sender_display: Mapped[str] = mapped_column(String(255), default="")
    sender_person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    claimed_kind: Mapped[str] = mapped_column(String(8))
    claimed_value: Mapped[str] = mapped_column(String(255))
    claimed_display: Mapped[str] = mapped_column(String(255), default="")
    holder_person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), nullable=True)  # None: nobody's
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, confirmed, rejected
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(255), nullable=True)


class LinkNoteRow(Base):
    """The internal note telling agents of a suggestion, written once per CRM (`outcome`: written or refused)."""

    __tablename__ = "link_notes"

    suggestion_id: Mapped[int] = mapped_column(ForeignKey("link_suggestions.id"), primary_key=True)
    crm: Mapped[str] = mapped_column(String(16), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    noted_at: Mapped[datetime]


class LinkCodeRow(Base):
    """A one-time code sent over a claimed channel: answered from there, it confirms the claim.

    Only a salted hash of the code is kept here (`crmhub.store.codes`); the
    message carrying it is a row of `replies` (crm `crmhub`), sent and found
    again after a lost answer like an agent's reply. `status`: pending, used,
    expired, or void (too many wrong answers, or the claim decided otherwise).
    """

    __tablename__ = "link_codes"
    __table_args__ = (
        Index("ix_link_codes_target", "target_kind", "target_value", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    suggestion_id: Mapped[int] = mapped_column(ForeignKey("link_suggestions.id"), index=True)
    target_kind: Mapped[str] = mapped_column(String(8))
    target_value: Mapped[str] = mapped_column(String(255))
    reply_ref: Mapped[str] = mapped_column(String(128))
    salt: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    tries: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)


class SupportCaseRow(Base):
    """One case (or ticket) crmhub opened, per CRM, kept after the thread moves on: the facts support metrics need.

    `threads` holds only a conversation's current case; this keeps each one
    (`seq`), with the time of the message that opened it, the close the CRM
    last reported and how often it reopened (an agent, or a customer's
    message within the reopen window). Written where the pipeline learns
    each fact (`crmhub.store.cases`), in the same batch statements.
    """

    __tablename__ = "support_cases"
    __table_args__ = (
        UniqueConstraint("crm", "conversation_key", "seq", name="uq_support_cases_case"),
        Index("ix_support_cases_first", "first_message_at"),  # a report's window
        Index("ix_support_cases_record", "crm", "record_id"),  # a reply's case
        Index("ix_support_cases_open", "id", sqlite_where=text("closed_at IS NULL"),
              postgresql_where=text("closed_at IS NULL")),  # the backlog, however long the history
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    crm: Mapped[str] = mapped_column(String(16))
    conversation_key: Mapped[str] = mapped_column(String(255))
    seq: Mapped[int]
    channel: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str] = mapped_column(String(64), default="")
    record_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    first_message_at: Mapped[datetime]  # the message's own time, not when crmhub wrote it
    opened_at: Mapped[datetime]  # when crmhub opened it
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)  # the last close the CRM reported; None: open
    reopens: Mapped[int] = mapped_column(default=0, server_default=text("0"))


class AdoptionRow(Base):
    """What a state store found an earlier store had written in one CRM, by object: adopted, not written again.

    `until` is the CRM's adoption horizon: a write of an interaction from before
    it may have been made by an earlier store (this one is new, or was restored
    from a backup), so the connector finds it by crmhub's key before writing
    (issue 14). The row with `object_type` '' carries only the horizon.
    """

    __tablename__ = "adoptions"

    crm: Mapped[str] = mapped_column(String(16), primary_key=True)
    object_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
    until: Mapped[datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[datetime]


# Score writes not done yet: the predicate of the partial `ix_survey_scores_pending`.
SCORE_PENDING_SQL = "status = 'pending'"


class SurveyRow(Base):
    """A CSAT or NPS question crmhub asked (or decided not to ask) a customer, and their answer.

    Unique per (`kind`, `subject`): a CSAT survey's subject is its case
    (`conversation#seq`), so several CRMs closing the case, or a close read
    again after a crash, ask once; an NPS question's is the person and period
    (`person:<id>@<period>`). The question itself goes out as a `replies` row
    (`reply_ref` `survey:<id>`) in the same transaction. `status`: asked,
    skipped (`reason` says why: opted out, WhatsApp window...), answered.
    """

    __tablename__ = "surveys"
    __table_args__ = (
        UniqueConstraint("kind", "subject", name="uq_surveys_subject"),
        Index("ix_surveys_conversation", "conversation_key"),  # a message's open question, a case's survey
        Index("ix_surveys_asked", "asked_at"),  # a report's window
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(255))
    conversation_key: Mapped[str] = mapped_column(String(255))
    seq: Mapped[int]
    crm: Mapped[str] = mapped_column(String(16))  # the CRM whose close asked it: its reply row's
    channel: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str] = mapped_column(String(64), default="")
    person_id: Mapped[int | None] = mapped_column(Id, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    asked_at: Mapped[datetime]
    answer_by: Mapped[datetime]
    score: Mapped[int | None] = mapped_column(nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    answer_id: Mapped[int | None] = mapped_column(Id, nullable=True)  # the ledger row of the answer


class SurveyScoreRow(Base):
    """An answer to write onto the surveyed case in one CRM (a field set: repeating it changes nothing)."""

    __tablename__ = "survey_scores"
    __table_args__ = (
        Index("ix_survey_scores_pending", "crm", "next_attempt_at", sqlite_where=text(SCORE_PENDING_SQL),
              postgresql_where=text(SCORE_PENDING_SQL)),
    )

    survey_id: Mapped[int] = mapped_column(Id, primary_key=True)
    crm: Mapped[str] = mapped_column(String(16), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, done, dead
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime]
    done_at: Mapped[datetime | None] = mapped_column(nullable=True)
