"""The canonical model: what the engine reasons about, free of any wire format.

Connectors translate each API's JSON into these types at the boundary; the
sync engine and the state store see only these.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any

CLOCK_SKEW = timedelta(minutes=5)  # our clock against a vendor's, when comparing times one of them stamped


class Channel(StrEnum):
    """Where a customer wrote or called. Which channel module reports each: `crmhub.channels.registry`."""

    SMS = "sms"
    WHATSAPP = "whatsapp"
    CALL = "call"
    X_MENTION = "x_mention"
    X_DM = "x_dm"
    EMAIL = "email"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"

    @property
    def label(self) -> str:
        """How people call the channel (used in CRM subjects), as its channel module's registry entry says."""
        from crmhub.channels.registry import label_of  # plain data; imported late, the registry names Channel values

        return label_of(self.value)

    @property
    def source(self) -> str:
        """The channel module that reports it (a source of cursors and dead letters)."""
        from crmhub.channels.registry import source_of

        return source_of(self.value)


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class IdentityKind(StrEnum):
    """Kinds of identity a person can have. X is keyed by the stable user id."""

    PHONE = "phone"
    EMAIL = "email"
    X = "x"
    X_HANDLE = "x_handle"  # what CRMs hold instead of the id; used to match the mirror
    WHATSAPP_USER = "wa_user"  # a WhatsApp business-scoped user id (BSUID): a user known by username, no phone
    MESSENGER = "fb_psid"  # a Facebook page-scoped id: one person has one per page
    INSTAGRAM = "ig_sid"  # an Instagram-scoped id: one person has one per Instagram professional account


@dataclass(frozen=True, order=True)
class Identity:
    """A normalised identity: phone in E.164, email lower-cased, X user id.

    `display` keeps a human form (the X handle, the phone as the source wrote
    it) for people; equality and lookups use only kind and value.
    """

    kind: IdentityKind
    value: str
    display: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class CallInfo:
    """What a call log adds to an interaction."""

    duration_seconds: int
    status: str
    recording_url: str | None = None


@dataclass(frozen=True)
class Interaction:
    """One message, call, mention or DM, as the engine sees it.

    `external_id` is unique within the channel (Twilio SID, X post or DM
    event id); `conversation_key` groups the follow-ups that must thread
    into one case or ticket. `raw` is the source payload, kept for audit and
    dead-letter replay, never logged.
    """

    channel: Channel
    direction: Direction
    external_id: str
    conversation_key: str
    sender: Identity
    recipient: Identity
    text: str
    occurred_at: datetime
    media: tuple[str, ...] = ()
    call: CallInfo | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    language: str | None = field(default=None, compare=False)  # detected at routing (ISO 639-1), None: unknown
    customer_name: str = field(default="", compare=False)  # the name the channel showed for the customer; no proof

    @property
    def customer(self) -> Identity:
        """The customer's side: the sender of inbound items, the recipient of outbound ones."""
        return self.sender if self.direction is Direction.INBOUND else self.recipient

    @property
    def key(self) -> str:
        """crmhub's idempotency key of this interaction, the same in every CRM."""
        return f"{self.channel}:{self.external_id}"


@dataclass(frozen=True)
class Malformed:
    """A source item that could not become an Interaction; it goes to dead letters."""

    source: str
    ref: str
    reason: str
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class Person:
    """A customer: the identities the graph has joined."""

    id: int
    identities: tuple[Identity, ...]


@dataclass(frozen=True)
class CrmLink:
    """A person's record in one CRM (e.g. salesforce Contact 003...)."""

    person_id: int
    crm: str
    object_type: str
    record_id: str


@dataclass(frozen=True)
class MirrorRecord:
    """A CRM contact as the local mirror keeps it: identities plus routing fields.

    `deleted` records are gone from the CRM (deleted, archived, or merged
    away); `merged_into` names the record that absorbed it when the CRM says
    (a merge's survivor), so the person's link moves there.
    """

    crm: str
    object_type: str
    record_id: str
    identities: tuple[Identity, ...]
    fields: Mapping[str, Any]
    modified_at: datetime
    created_at: datetime | None = None
    deleted: bool = False
    merged_into: str | None = None


@dataclass(frozen=True)
class QueueTarget:
    """Where one CRM should put a new case: a declared queue and its extras."""

    queue: str
    priority: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteDecision:
    """Which rule won for an interaction, the target per CRM, and what was tried."""

    rule: str
    targets: Mapping[str, QueueTarget]
    tried: tuple[tuple[str, str], ...] = ()  # (rule name, why it did not match)


class WritePriority(IntEnum):
    """Which outbox writes go first when a CRM's API allowance runs low (lower goes first).

    Agent replies before new inbound items, new cases before follow-ups, and
    all of them before backfill (history re-written after identity merges).
    """

    REPLY = 0
    NEW_CASE = 1
    FOLLOW_UP = 2
    BACKFILL = 3


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


@dataclass(frozen=True)
class OutboxItem:
    """One (interaction, CRM) write waiting for, or past, delivery."""

    id: int
    idempotency_key: str
    interaction_id: int
    crm: str
    status: OutboxStatus
    attempts: int
    last_error: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    """An item that failed for good; ops fix and replay or discard it."""

    id: int
    source: str
    ref: str
    reason: str
    payload: Mapping[str, Any]
    created_at: datetime


# ---- the engine -> CRM connector contract ------------------------------------
@dataclass(frozen=True)
class CaseSpec:
    """A case/ticket to open, found again by its unique `key` if it already exists.

    `may_exist` is False only when no earlier attempt can have created it, so
    a CRM without upserts may skip looking it up.
    """

    key: str
    target: QueueTarget
    fields: Mapping[str, str]
    may_exist: bool = True


PERSON_KEY_PREFIX = "crmhub-person-"


def person_key(person_id: int) -> str:
    """The key of the contact crmhub created for a person before keys were derived (`persons.key` of older stores)."""
    return f"{PERSON_KEY_PREFIX}{person_id}"


def identity_person_key(identity: Identity) -> str:
    """crmhub's key of the contact it creates for a person first seen with `identity`.

    The same in every state store, so a new store in front of an org finds
    (adopts) the contact an earlier store created for that customer, and
    never gives it to another person; a digest, so the key carries no
    phone number or address.
    """
    digest = hashlib.sha256(f"{identity.kind.value}:{identity.value}".encode()).hexdigest()[:24]
    return f"{PERSON_KEY_PREFIX}{digest}"


@dataclass(frozen=True)
class HistoryWrite:
    """One interaction to write onto a customer's CRM record, threaded into a case.

    Exactly one of `contact_id` / `new_contact` says whose record it is
    (`new_contact`: the identities to create a contact of type
    `contact_object` from); exactly one of `case_id` / `new_case` says which
    case it threads into. `fields` are the admin's rendered history
    templates for the activity record. `first_attempt` lets a CRM without
    upserts skip checking for an earlier copy (the default is the careful one).
    `relink` marks a backfill after an identity merge: the activity exists,
    on another record, and must end up on `contact_id` (and so must its case).
    `reopen` says the case `case_id` was closed in the CRM and the message
    falls within the reopen window: the connector sets the case open again
    (in the same batched calls, idempotently) before threading into it; the
    queue matters where the CRM's open states belong to a queue (HubSpot's
    pipeline stages). `job_ref` is what the connector reported when an
    earlier attempt submitted an asynchronous bulk job carrying this write
    (`write_history(..., on_submitted=)`): the connector waits for that job
    and looks at what it did instead of submitting again. `detach_from`
    (with `relink`): the join that put the activity on that contact was
    undone; a CRM that keeps old associations on a relink removes those.
    `adopt` says the
    interaction is older than the CRM's adoption horizon (this state store is
    new or restored in front of an org crmhub wrote to): the connector looks
    for the activity by crmhub's key before writing, and one it finds is
    adopted as the CRM holds it (not moved, its case not reopened), reported
    with `WriteOutcome.adopted`.
    """

    key: str
    person_id: int
    interaction: Interaction
    fields: Mapping[str, str]
    contact_object: str
    contact_id: str | None = None
    new_contact: tuple[Identity, ...] = ()
    case_id: str | None = None
    new_case: CaseSpec | None = None
    first_attempt: bool = False  # True: never sent before, so nothing of it can be in the CRM yet
    relink: bool = False  # delivered before onto another record: move it (and its case) to `contact_id`
    reopen: QueueTarget | None = None  # set: `case_id` is closed in the CRM; reopen it (into this queue) first
    job_ref: str | None = None  # a bulk job an earlier attempt submitted with this write (the connector's reference)
    detach_from: str | None = None  # a relink after an undone join: the wrong contact it leaves (`crmhub links undo`)
    adopt: bool = False  # an earlier state store may have written it: found by key, it is taken as it is (issue 14)
    contact_key: str = ""  # crmhub's key of the contact to create (`persons.key`); "" : `person_key(person_id)`
    # identity fields of `contact_id` to set first, by identities.yaml kind: {"x_handle": "jane_new"} after a rename
    contact_update: Mapping[str, str] = field(default_factory=dict)

    def person_key(self) -> str:
        """The key the contact of `new_contact` is created under, so a repeated create finds the first one."""
        return self.contact_key or person_key(self.person_id)


@dataclass(frozen=True)
class LinkMark:
    """An agent's decision on a link suggestion, set on a case in the CRM (`crmhub.link_marks`).

    `actor` is the agent as the CRM names them (`salesforce user 005…`), or
    `agent in <crm>` where the API does not say who set it.
    """

    suggestion_id: int
    confirm: bool  # False: reject
    actor: str


@dataclass(frozen=True)
class CaseState:
    """One of crmhub's cases as the CRM holds it now: open, or closed since `closed_at`.

    `case_key` is crmhub's key of the case (`<conversation>#<seq>`); `closed_at`
    is the close time as the CRM reports it (None: open, e.g. reopened by an
    agent); `modified_at` is the CRM's last change of the record, so an older
    state read late never overrides a newer one. `final`: closed for good,
    the CRM refuses to reopen it (a Zendesk ticket in status `closed`).
    `link_marks`: what an agent set on the case about link suggestions.
    """

    case_key: str
    record_id: str
    closed_at: datetime | None
    modified_at: datetime
    final: bool = False
    link_marks: tuple[LinkMark, ...] = ()  # agents' confirmations or rejections of link suggestions set on it

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


@dataclass(frozen=True)
class WriteOutcome:
    """What the CRM did with one HistoryWrite; `error` set when it did not take.

    `job_ref` set (and no error): the write went into an asynchronous job
    (or waits for one) and is not settled yet. The engine keeps the row
    pending with that reference, records the `contact_id` / `case_id` known
    so far, and offers the row again after `settle_after` seconds; the
    connector then settles it from the job (`HistoryWrite.job_ref`) without
    submitting it again. Neither an attempt nor a failure.

    `urgent` (the default): the worker runs for the write as soon as it is
    due, since its next step waits on the job. False: the write is done in
    the CRM once its job has run, and only the engine's books wait; the row
    rides the next delivery run that comes (a batch, the interval), whose
    single status read it shares, instead of costing a run and a read of
    its own.
    """

    key: str
    record_id: str | None = None
    contact_id: str | None = None
    case_id: str | None = None
    error: Exception | None = None
    job_ref: str | None = None
    settle_after: float = 0.0
    adopted: str | None = None  # found written by an earlier state store: the object counted (e.g. "tasks")
    urgent: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None and self.job_ref is None

    @property
    def waiting(self) -> bool:
        """Submitted in a job that has not finished: to be settled by a later run."""
        return self.error is None and self.job_ref is not None


# ---- replies: CRM -> engine -> channel ----------------------------------------
class ReplyStatus(StrEnum):
    """Where an agent's reply is on its way to the customer.

    pending: collected, not tried yet (or the last try certainly sent nothing);
    sending: claimed, or the last try ended without knowing whether the channel
    took it (checked before any further send); sent: the channel took it;
    delivered: the channel reports it delivered; failed: the channel reports it
    could not deliver it; dead: crmhub gave up before the channel took it;
    held: something stood in for it (WhatsApp's template outside the 24-hour
    window): it goes out, once, when the customer next writes in the
    conversation (`crmhub.sync.replies.release_held`), or is given up.
    """

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD = "dead"
    HELD = "held"

    @property
    def final(self) -> bool:
        return self in (ReplyStatus.DELIVERED, ReplyStatus.FAILED, ReplyStatus.DEAD)


# The order statuses move in; a status never goes back, and the final ones accept nothing after them.
REPLY_STATUS_RANK = {ReplyStatus.PENDING: 0, ReplyStatus.SENDING: 1, ReplyStatus.SENT: 2,
                     ReplyStatus.DELIVERED: 3, ReplyStatus.FAILED: 3, ReplyStatus.DEAD: 3, ReplyStatus.HELD: 2}


@dataclass(frozen=True)
class AgentReply:
    """A public reply an agent wrote on a CRM case/ticket, as the CRM connector reads it.

    `reply_ref` is the CRM's id of the comment/communication (unique per CRM);
    `case_id` the case/ticket it is on (compared with crmhub's threads);
    `text` is what the customer gets (never logged).
    """

    crm: str
    reply_ref: str
    case_id: str
    text: str
    written_at: datetime
    author: str = ""


@dataclass(frozen=True)
class ReplyPage:
    """One page of agent replies; `cursor` is where the next read starts (None: unchanged)."""

    replies: tuple[AgentReply, ...]
    cursor: str | None
    last: bool


@dataclass(frozen=True)
class OutboundMessage:
    """One reply to send over the customer's channel, in the conversation it belongs to.

    `sender` is our side of the conversation (the Twilio number or WhatsApp
    sender the customer wrote to, our X account), `recipient` the customer.
    `in_reply_to` is the post a mention reply answers. `uncertain_since` is
    set when an earlier try may have gone out: the connector first looks for a
    message it sent since then with the same text, and sends only if none.

    `last_inbound_at` is when the customer last wrote in the conversation (None:
    never), `asked_at` when the send was claimed: channels with a session window
    (WhatsApp's 24 hours) decide from them whether free text may go out.
    `customer_name` (the name the channel reported for the customer) and
    `case_id` are what an approved template may show; `survey` marks crmhub's
    own survey question (never replaced by a template).
    """

    key: str
    channel: Channel
    conversation_key: str
    sender: Identity
    recipient: Identity
    text: str
    in_reply_to: str | None = None
    uncertain_since: datetime | None = None
    already_sent: tuple[str, ...] = ()  # message ids of the conversation's other replies: never "found" as this one
    last_inbound_at: datetime | None = None
    asked_at: datetime | None = None
    customer_name: str = ""
    case_id: str = ""
    language: str | None = None  # the conversation's, when routing detected one
    survey: bool = False
    code: bool = False  # a one-time link code (`crmhub.store.codes`): crmhub's own message, starting its own thread


@dataclass(frozen=True)
class CodeRoute:
    """How a one-time link code reaches a claimed identity of `kind`: a channel module's offer.

    The code goes over `channel` from `ours` (or from the address a claim came
    in on, when it came in on `channel`), saying `text` (holds `{code}`).
    `conversation(ours, target, key)` is the conversation key the channel gives
    the sent message with idempotency key `key`, as its poll will read the copy
    back: so a copy read before the send is recorded waits for it, and then
    goes into no CRM.
    """

    kind: IdentityKind
    channel: Channel
    ours: Identity
    text: str
    conversation: Callable[[Identity, Identity, str], str]


@dataclass(frozen=True)
class SentMessage:
    """What the channel did with an OutboundMessage.

    `echo` is the sent message as the channel's poll will read it back, so the
    ledger holds it at once (the poll's copy is then a repeat).
    """

    message_id: str | None
    status: ReplyStatus = ReplyStatus.SENT
    echo: Interaction | None = None
    found_earlier: bool = False  # an earlier, uncertain try had gone out: nothing was sent now
    stood_in: bool = False  # something else went out instead of the text (a template): hold the reply


@dataclass(frozen=True)
class Delivery:
    """A channel's latest word on a sent message: its status and, for a failure, why (for people)."""

    status: ReplyStatus
    channel_status: str = ""
    error: str | None = None


@dataclass(frozen=True)
class CaseNote:
    """An internal note to put on a case/ticket (never visible to the customer); `key` makes it once-only."""

    case_id: str
    key: str
    text: str
