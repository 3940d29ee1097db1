"""Apply a `TrafficPlan` to running emulators through their Python seed APIs.

`traffic.py` draws a scenario as pure data; this module puts it into the
sandbox, so the CRMs and channels hold what the plan says before (and while)
crmhub runs against them:

* `seed_crms` creates the CRM records that exist at the start (and, with
  `until`, those an agent creates by then), plus the queues, groups and
  pipeline a routing config names;
* `replay_events` streams `plan.iter_events()` into the Twilio and X
  emulators: inbound messages, calls, mentions and DMs, back-dated to the
  plan's times.

Nothing here speaks HTTP: every write is a seed method of the emulator, so no
API call is counted and no rate limit or fault applies. Both reports say what
could not be replayed and why (see docs/sandbox/traffic.md, "Replaying a plan
into the sandbox").

Memory stays flat in the number of events: events are streamed, counters are
per channel and reason, and the only structures that grow are the id mapping
(`keep_ids=False` drops it) and a window of recent X posts for threading
replies (at most `FOLLOW_UP` of traffic).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, cast

from crmhub.sandbox._server import Emulator
from crmhub.sandbox.traffic import CHANNELS, CRMS, FOLLOW_UP, CrmRecord, Event, TrafficPlan

if TYPE_CHECKING:
    from crmhub.sandbox.hubspot import HubSpotEmulator
    from crmhub.sandbox.salesforce import SalesforceEmulator
    from crmhub.sandbox.twilio import TwilioEmulator
    from crmhub.sandbox.x import XEmulator
    from crmhub.sandbox.zendesk import ZendeskEmulator

# Queues a routing config names; DeveloperName -> Name.
SALESFORCE_QUEUES: dict[str, str] = {
    "Support_Queue": "Support Queue", "Billing_Queue": "Billing Queue", "VIP_Queue": "VIP Queue",
}
ZENDESK_GROUPS: tuple[str, ...] = ("Support",)
HUBSPOT_PIPELINE_ID = "0"  # the default ticket pipeline every HubSpot portal has
# The plan's tiers on Salesforce's Tier__c picklist (Standard, Gold, Platinum).
SALESFORCE_TIERS: dict[str, str] = {"gold": "Gold", "silver": "Standard"}
LEAD_COMPANY = "[not provided]"  # Lead.Company is required; web-to-lead's placeholder

# Why an event was not replayed (keys of ChannelCounts.skipped).
SKIP_REASONS: dict[str, str] = {
    "no_emulator": "the channel's emulator is not in `emulators`",
    "outbound_message": "Twilio has no seed method for an outbound message (only receive_message for inbound)",
    "bad_phone": "the sender is not E.164 and receive_message refuses it",
    "bad_timestamp": "the channel reports a junk timestamp; the emulators store real times only",
    "unknown_address": "addressed to another X account; X never shows it to ours",
}
DUPLICATES_NOTE = ("neither Twilio nor X can store one SID / post id / DM event id twice, and their seed "
                   "methods always mint a new id, so a re-delivery cannot be the same item")


# ---- reports ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DroppedField:
    """A field of a plan record the CRM could not hold (the record itself was created)."""

    record_id: str
    crm: str
    field: str
    value: str
    reason: str


@dataclass(frozen=True, slots=True)
class SeedReport:
    """What `seed_crms` created.

    Attributes:
        ids: plan record id -> CRM id (Salesforce 18-character id, Zendesk user id and HubSpot
            contact id, all as strings), in the order they were created.
        created: records created per CRM.
        pending: records of the seeded CRMs left out because they appear after `until`.
        skipped_crms: CRMs with records in the plan but no emulator in `emulators`.
        routing: "<crm>:<name>" -> id of the queues, groups and pipeline a routing config uses.
        dropped: fields a CRM could not hold, with the reason.
    """

    ids: Mapping[str, str]
    created: Mapping[str, int]
    pending: int
    skipped_crms: tuple[str, ...]
    routing: Mapping[str, str]
    dropped: tuple[DroppedField, ...] = ()


@dataclass(frozen=True, slots=True)
class ChannelCounts:
    """One channel's events in the replayed window: `events` = replayed + duplicates + skipped."""

    events: int = 0
    replayed: int = 0
    duplicates_not_replayable: int = 0
    skipped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What `replay_events` did.

    Attributes:
        channels: counts for every channel of the plan (sms, whatsapp, call, x_mention, x_dm).
        ids: plan event id -> the channel's item id (Twilio SID, X post id, X DM event id), in
            replay order; empty when `keep_ids=False`.
        ids_kept: whether `ids` was kept.
        foreign_numbers: numbers that are not the plan's endpoints but were added to the Twilio
            account so the items addressed to them (malformed `unknown_address`) could be held.
        replies_without_parent: X replies posted unthreaded because their parent post was not
            replayed in this call (e.g. it precedes `start_after`).
        last_at: `occurred_at` of the last event looked at (None if the window was empty).
    """

    channels: Mapping[str, ChannelCounts]
    ids: Mapping[str, str]
    ids_kept: bool
    foreign_numbers: tuple[str, ...] = ()
    replies_without_parent: int = 0
    last_at: datetime | None = None

    @property
    def events(self) -> int:
        return sum(c.events for c in self.channels.values())

    @property
    def replayed(self) -> int:
        return sum(c.replayed for c in self.channels.values())

    @property
    def duplicates_not_replayable(self) -> int:
        return sum(c.duplicates_not_replayable for c in self.channels.values())

    @property
    def skipped(self) -> Mapping[str, int]:
        """Skipped events by reason, over all channels."""
        total: Counter[str] = Counter()
        for counts in self.channels.values():
            total.update(counts.skipped)
        return MappingProxyType(dict(sorted(total.items())))


# ---- CRMs -----------------------------------------------------------------------------


def seed_crms(plan: TrafficPlan, emulators: Mapping[str, Emulator], *, until: datetime | None = None,
              start_after: datetime | None = None) -> SeedReport:
    """Create the plan's CRM records (and routing targets) in the CRM emulators given.

    Args:
        plan: the scenario.
        emulators: API name -> emulator; CRMs without one are skipped (and named in the report).
        until: also create the records an agent creates up to this moment (`appears_at <= until`);
            None: only the records that exist before the traffic.
        start_after: only records with `appears_at > start_after` (the ones existing at the start
            are then left out), to continue a seeding that stopped at `until=start_after`.

    Raises:
        TypeError: an emulator under the wrong name.
        ValueError: a record the emulator refuses (a bug in the plan or here, never expected).
    """
    seeders = {crm: _CRM_SEEDERS[crm](_emulator(emulators, crm), plan) for crm in CRMS if crm in emulators}
    routing: dict[str, str] = {}
    for seeder in seeders.values():
        routing.update(seeder.routing())  # first, as an admin sets up queues before contacts arrive
    ids: dict[str, str] = {}
    created: Counter[str] = Counter()
    pending, dropped = 0, []
    for record in plan.records:
        if record.crm not in seeders:
            continue
        if not _in_window(record.appears_at, until, start_after):
            if record.appears_at is not None and (until is None or record.appears_at > until):
                pending += 1
            continue
        crm_id, lost = seeders[record.crm].create(record)
        ids[record.record_id] = crm_id
        created[record.crm] += 1
        dropped.extend(lost)
    skipped = tuple(crm for crm in CRMS if crm not in emulators and any(r.crm == crm for r in plan.records))
    return SeedReport(MappingProxyType(ids), MappingProxyType({crm: created[crm] for crm in seeders}), pending,
                      skipped, MappingProxyType(routing), tuple(dropped))


def _in_window(appears_at: datetime | None, until: datetime | None, start_after: datetime | None) -> bool:
    if appears_at is None:
        return start_after is None
    return (until is not None and appears_at <= until) and (start_after is None or appears_at > start_after)


class _CrmSeeder(Protocol):
    def routing(self) -> dict[str, str]:
        """'<crm>:<name>' -> id of each routing target, created where missing."""

    def create(self, record: CrmRecord) -> tuple[str, list[DroppedField]]:
        """Create the record; its CRM id and the fields the CRM could not hold."""


class _SalesforceSeeder:
    def __init__(self, emulator: Emulator, plan: TrafficPlan) -> None:
        self.sf = cast("SalesforceEmulator", emulator)

    def routing(self) -> dict[str, str]:
        existing = {g["DeveloperName"]: g["Id"] for g in self.sf.records("Group") if g["Type"] == "Queue"}
        for developer_name, name in SALESFORCE_QUEUES.items():
            if developer_name not in existing:
                existing[developer_name] = self.sf.add_queue(name, developer_name)
        return {f"salesforce:{name}": str(existing[name]) for name in SALESFORCE_QUEUES}

    def create(self, record: CrmRecord) -> tuple[str, list[DroppedField]]:
        fields: dict[str, Any] = {
            "FirstName": record.first_name, "LastName": record.last_name, "Email": record.email,
            "Phone": record.phone, "MobilePhone": record.mobile, "X_Handle__c": record.x_handle,
            "Tier__c": SALESFORCE_TIERS.get(record.tier or ""),
        }
        sobject = "Lead" if record.kind == "lead" else "Contact"
        if sobject == "Lead":
            fields["Company"] = LEAD_COMPANY
        return self.sf.insert(sobject, **{k: v for k, v in fields.items() if v is not None}), []


class _ZendeskSeeder:
    """Zendesk keeps email and phone identities unique; a shared switchboard needs `shared_phone_number`."""

    def __init__(self, emulator: Emulator, plan: TrafficPlan) -> None:
        self.zd = cast("ZendeskEmulator", emulator)
        # a shared switchboard is on every record in the CRM's own display of it
        self.shared_phones = {s.identity.display("zendesk") for s in plan.shared if s.identity.kind == "phone"}
        with self.zd.lock:  # every identity already held (e.g. by an earlier seeding), from the JSON state
            held = [(i["type"], str(i["value"])) for i in self.zd.state["identities"].values()]
        self.emails = {value.lower() for kind, value in held if kind == "email"}
        self.phones = {value.strip() for kind, value in held if kind == "phone_number"}

    def routing(self) -> dict[str, str]:
        existing = {g["name"]: g["id"] for g in self.zd.groups()}
        for name in ZENDESK_GROUPS:
            if name not in existing:
                existing[name] = self.zd.add_group(name)
        return {f"zendesk:{name}": str(existing[name]) for name in ZENDESK_GROUPS}

    def create(self, record: CrmRecord) -> tuple[str, list[DroppedField]]:
        from crmhub.sandbox.zendesk.errors import ZendeskError

        dropped: list[DroppedField] = []

        def drop(name: str, value: str, reason: str) -> None:
            dropped.append(DroppedField(record.record_id, "zendesk", name, value, reason))

        fields: dict[str, Any] = {}
        email = record.email
        if email and email.strip().lower() in self.emails:
            drop("email", email, "another Zendesk user holds this email (email identities are unique)")
        elif email:
            fields["email"] = email
            self.emails.add(email.strip().lower())
        phones = [p for p in (record.phone, record.mobile) if p]
        shared = [p for p in phones if p in self.shared_phones]
        own = [p for p in phones if p not in self.shared_phones]
        for phone in [p for p in own if p.strip() in self.phones]:
            drop("phone", phone, "another Zendesk user holds this phone (phone identities are unique)")
            own.remove(phone)
        if own:
            fields["phone"] = own[0]
            for phone in shared:
                drop("phone", phone, "a shared number is only held as a user's sole phone "
                                     "(shared_phone_number), and this user has its own")
        elif shared:
            fields.update(phone=shared[0], shared_phone_number=True)
        user_fields = {k: v for k, v in (("x_handle", record.x_handle), ("tier", record.tier)) if v}
        if user_fields:
            fields["user_fields"] = user_fields
        user_id = self.zd.add_user(f"{record.first_name} {record.last_name}", **fields)
        for phone in own[1:]:
            try:
                self.zd.add_identity(user_id, "phone_number", phone)
            except ZendeskError:
                drop("mobile", phone, "Zendesk refused it as a second phone identity")
        self.phones.update(p.strip() for p in own)
        return str(user_id), dropped


class _HubSpotSeeder:
    """HubSpot keeps contact emails unique (409 CONFLICT)."""

    def __init__(self, emulator: Emulator, plan: TrafficPlan) -> None:
        self.hub = cast("HubSpotEmulator", emulator)
        self.emails = {str(c["properties"].get("email") or "").lower() for c in self.hub.objects("contacts")}

    def routing(self) -> dict[str, str]:
        with self.hub.lock:
            pipelines = self.hub.backend.pipelines("tickets")
        default = next((p for p in pipelines if p["id"] == HUBSPOT_PIPELINE_ID), None)
        return {f"hubspot:{default['label']}": HUBSPOT_PIPELINE_ID} if default else {}

    def create(self, record: CrmRecord) -> tuple[str, list[DroppedField]]:
        dropped = []
        props: dict[str, Any] = {"firstname": record.first_name, "lastname": record.last_name,
                                 "phone": record.phone, "mobilephone": record.mobile,
                                 "twitterhandle": record.x_handle}
        if record.email and record.email.lower() in self.emails:
            dropped.append(DroppedField(record.record_id, "hubspot", "email", record.email,
                                        "another HubSpot contact holds this email (unique)"))
        elif record.email:
            props["email"] = record.email
            self.emails.add(record.email.lower())
        return self.hub.add("contacts", **{k: v for k, v in props.items() if v is not None}), dropped


_CRM_SEEDERS: dict[str, Callable[[Emulator, TrafficPlan], _CrmSeeder]] = {
    "salesforce": _SalesforceSeeder, "zendesk": _ZendeskSeeder, "hubspot": _HubSpotSeeder,
}


# ---- channels ----------------------------------------------------------------------------


def replay_events(plan: TrafficPlan, emulators: Mapping[str, Emulator], *, until: datetime | None = None,
                  start_after: datetime | None = None, keep_ids: bool = True,
                  x_access_token: tuple[str, str] | None = None) -> ReplayReport:
    """Deliver the plan's events with `start_after < occurred_at <= until` into Twilio and X.

    First our own endpoints are registered where missing (Twilio numbers, the X support account,
    and every X user of the plan under the plan's user ids), then events are streamed in time
    order. What cannot be replayed is counted per channel and reason (`SKIP_REASONS`), and
    duplicates as `duplicates_not_replayable`.

    Args:
        plan: the scenario.
        emulators: API name -> emulator ("twilio", "x"); events of a missing one are skipped.
        until: last moment replayed (inclusive); None: the whole plan.
        start_after: replay only what happened after this moment; pass the previous call's
            `until` to continue a replay.
        keep_ids: keep the event id -> item id mapping (False for benchmarks: flat memory).
        x_access_token: (token, secret) to register as OAuth 1.0a credentials of the plan's
            support account, so a client can read its DMs.

    Raises:
        TypeError: an emulator under the wrong name.
    """
    twilio = _optional(emulators, "twilio")
    x = _optional(emulators, "x")
    twilio_side = _TwilioReplayer(cast("TwilioEmulator", twilio), plan) if twilio is not None else None
    x_side = _XReplayer(cast("XEmulator", x), plan, x_access_token) if x is not None else None
    counts = {channel: _Tally() for channel in CHANNELS}
    ids: dict[str, str] = {}
    last_at: datetime | None = None
    for event in plan.iter_events():
        if until is not None and event.occurred_at > until:
            break
        if start_after is not None and event.occurred_at <= start_after:
            continue
        last_at = event.occurred_at
        tally = counts[event.channel]
        tally.events += 1
        if event.duplicate_of is not None:
            tally.duplicates += 1
            continue
        side: _TwilioReplayer | _XReplayer | None = x_side if event.channel.startswith("x_") else twilio_side
        outcome = side.deliver(event) if side is not None else _Skip("no_emulator")
        if isinstance(outcome, _Skip):
            tally.skipped[outcome.reason] += 1
            continue
        tally.replayed += 1
        if keep_ids:
            ids[event.event_id] = outcome
    return ReplayReport(
        channels=MappingProxyType({channel: tally.freeze() for channel, tally in counts.items()}),
        ids=MappingProxyType(ids), ids_kept=keep_ids,
        foreign_numbers=tuple(twilio_side.foreign) if twilio_side else (),
        replies_without_parent=x_side.orphans if x_side else 0, last_at=last_at,
    )


@dataclass
class _Tally:
    events: int = 0
    replayed: int = 0
    duplicates: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def freeze(self) -> ChannelCounts:
        return ChannelCounts(self.events, self.replayed, self.duplicates,
                             MappingProxyType(dict(sorted(self.skipped.items()))))


@dataclass(frozen=True, slots=True)
class _Skip:
    reason: str


class _TwilioReplayer:
    def __init__(self, emulator: TwilioEmulator, plan: TrafficPlan) -> None:
        self.twilio, self.plan = emulator, plan
        self.known = {plan.endpoints.sms_number, plan.endpoints.whatsapp_number}
        for number in sorted(self.known):
            self._ensure_number(number)
        self.foreign: list[str] = []

    def _ensure_number(self, number: str) -> bool:
        """Add `number` to the account unless some account has it already; True if added."""
        with self.twilio.lock:
            if self.twilio.backend.find_number(number) is not None:
                return False
        self.twilio.add_number(number)
        return True

    def deliver(self, event: Event) -> str | _Skip:
        if event.reason == "bad_timestamp":
            return _Skip("bad_timestamp")
        ours = event.to_addr if event.direction == "inbound" else event.from_addr
        number = ours.removeprefix("whatsapp:")
        if number not in self.known:  # a number crmhub is not set up for, on the same account
            self.known.add(number)
            if self._ensure_number(number):
                self.foreign.append(number)
        if event.channel == "call":
            direction = "inbound" if event.direction == "inbound" else "outbound-api"
            return self.twilio.add_call(event.from_addr, event.to_addr, direction, event.call_status or "completed",
                                        event.call_duration or 0, event.occurred_at, event.recording)
        if event.direction == "outbound":
            return _Skip("outbound_message")
        if event.reason == "bad_phone":
            return _Skip("bad_phone")
        profile = None
        if event.channel == "whatsapp" and event.person_id is not None:
            profile = self.plan.person(event.person_id).name
        return self.twilio.receive_message(event.from_addr, event.to_addr, event.text, event.media_urls,
                                           at=event.occurred_at, profile_name=profile)


class _XReplayer:
    def __init__(self, emulator: XEmulator, plan: TrafficPlan, access_token: tuple[str, str] | None) -> None:
        self.x, self.support = emulator, plan.endpoints.x_user_id
        self._ensure_user(plan.endpoints.x_user_id, plan.endpoints.x_handle, plan.endpoints.x_handle)
        for person in plan.persons:
            for ident in person.identities:
                if ident.kind == "x" and ident.handle:
                    self._ensure_user(ident.value, ident.handle, person.name)
        if access_token is not None:
            self.x.add_access_token(self.support, *access_token)
        self.recent: dict[str, tuple[str, datetime]] = {}  # event id -> (post id, when), FOLLOW_UP deep
        self.orphans = 0

    def _ensure_user(self, user_id: str, username: str, name: str) -> None:
        with self.x.lock:
            if self.x.backend.user(user_id) is not None:
                return
        self.x.add_user(username, name, user_id=user_id)

    def deliver(self, event: Event) -> str | _Skip:
        if event.reason in ("bad_timestamp", "unknown_address"):
            return _Skip(event.reason)
        if event.channel == "x_dm":
            return self.x.send_dm(event.from_addr, event.to_addr, event.text, at=event.occurred_at)
        while self.recent:  # replies follow their parent within FOLLOW_UP: older posts can go
            oldest = next(iter(self.recent))
            if self.recent[oldest][1] >= event.occurred_at - FOLLOW_UP:
                break
            del self.recent[oldest]
        parent = None
        if event.in_reply_to is not None:
            found = self.recent.get(event.in_reply_to)
            if found is None:
                self.orphans += 1
            else:
                parent = found[0]
        post_id = self.x.post_mention(event.from_addr, event.text, in_reply_to=parent, at=event.occurred_at)
        self.recent[event.event_id] = (post_id, event.occurred_at)
        return post_id


def _optional(emulators: Mapping[str, Emulator], api: str) -> Emulator | None:
    return _emulator(emulators, api) if api in emulators else None


def _emulator(emulators: Mapping[str, Emulator], api: str) -> Emulator:
    emulator = emulators[api]
    if not isinstance(emulator, Emulator) or emulator.name != api:
        raise TypeError(f"emulators[{api!r}] must be the {api} emulator, got {type(emulator).__name__}")
    return emulator


__all__ = [
    "DUPLICATES_NOTE", "SALESFORCE_QUEUES", "SALESFORCE_TIERS", "SKIP_REASONS", "ZENDESK_GROUPS", "ChannelCounts",
    "DroppedField", "ReplayReport", "SeedReport", "replay_events", "seed_crms",
]
