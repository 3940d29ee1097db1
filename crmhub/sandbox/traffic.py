"""Seeded, deterministic support traffic for the sandbox, as pure data.

`generate()` draws persons (the ground truth), their records in the three
CRMs and the channel traffic they produce, all from one seed, so a test, the
demo and a benchmark replay exactly the same story. Nothing here speaks HTTP
or imports an emulator: seeding the emulators from a plan is the caller's job.

Events are not stored. Each person's events are redrawn from a per-person
seed on demand and merged in time order, so `iter_events()` streams 100k
events with memory that grows with persons, not with events.

Identity keys are how the ground truth names an identity: `tel:+14155550100`
(a phone and a WhatsApp account on the same number are one key),
`email:jane.doe@example.com` and `x:<numeric user id>`.
"""

from __future__ import annotations

import heapq
import json
import random
import string
import types
import typing
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property, partial
from typing import Any, ClassVar, Literal

Channel = Literal["sms", "whatsapp", "call", "x_mention", "x_dm"]
Direction = Literal["inbound", "outbound"]
IdentityKind = Literal["phone", "whatsapp", "email", "x"]

CRMS = ("salesforce", "zendesk", "hubspot")
CHANNELS: tuple[Channel, ...] = ("sms", "whatsapp", "call", "x_mention", "x_dm")
DEFAULT_START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
# Consecutive events of one channel conversation closer than FOLLOW_UP belong
# to one thread; a person is silent for at least QUIET between two threads, so
# any threading window between the two gives the same answer.
FOLLOW_UP = timedelta(hours=6)
QUIET = timedelta(hours=12)
# Where a display format of an identity can be seen ("text": quoted in a message).
DISPLAY_SOURCES = (*CRMS, "text")

# Fictional number ranges that phonenumbers still accepts as valid:
# NANP 555-0100..0199 and Ofcom's drama numbers (0xxx blocks).
US_AREAS = (
    "201 202 203 205 206 207 208 210 212 213 214 215 216 217 224 225 231 239 248 251 252 253 256 262 267 269 "
    "281 301 302 303 304 305 310 312 313 314 315 316 317 318 319 320 321 323 330 334 336 347 352 360 386 401 "
    "402 404 405 406 407 408 410 412 413 414 415 503 512 602 617 646 702 713 718 801 919"
).split()
GB_BLOCKS = (("20", "7946"), ("161", "496"), ("113", "496"), ("114", "496"), ("116", "496"), ("117", "496"),
             ("118", "496"), ("121", "496"), ("131", "496"), ("141", "496"), ("151", "496"), ("191", "498"))
PHONE_FORMATS = {
    "US": ("({a}) {b}-{c}", "{a}.{b}.{c}", "+1 {a} {b} {c}", "{a}-{b}-{c}", "+1-{a}-{b}-{c}", "1 ({a}) {b}-{c}",
           "+1{a}{b}{c}"),
    "GB": ("+44 {a} {b} {c}", "0{a} {b} {c}", "+44 (0){a} {b} {c}", "+44{a}{b}{c}", "(0{a}) {b} {c}",
           "0044 {a} {b} {c}"),
}
COUNTRY_CODE = {"US": "1", "GB": "44"}
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")
EMAIL_STYLES = (  # how a CRM or a person writes an address; the key is always lower case
    str.lower,
    lambda e: ".".join(p.capitalize() for p in e.split("@")[0].split(".")) + "@" + e.split("@")[1].capitalize(),
    str.upper,
    lambda e: e.split("@")[0] + "@" + e.split("@")[1].capitalize(),
)
HANDLE_STYLES = ("@{h}", "{h}", "@{lo}", "{lo}")


def _as_written(source: str, handle: str) -> str:
    """A handle quoted in a message is written `@handle`: crmhub never reads a bare word as one."""
    return handle if source != "text" or handle.startswith("@") else f"@{handle}"

FIRST = {
    "en": "Jane John Emily Michael Sarah David Olivia James Amelia Oliver Grace Harry Chloe Daniel Ryan".split(),
    "es": "María José Lucía Javier Carmen Diego Sofía Pablo Elena Andrés".split(),
    "fr": "Camille Julien Chloé Mathieu Élodie Théo Inès Hugo Margaux Louis".split(),
}
LAST = {
    "en": "Doe Smith Johnson Brown Taylor Wilson Evans Walker Clarke Hughes Patel O'Brien".split(),
    "es": "García Martínez López Sánchez Pérez Gómez Fernández Ruiz Díaz Torres".split(),
    "fr": "Martin Bernard Dubois Lefèvre Moreau Laurent Girard Roux Fournier Mercier".split(),
}
OPENERS = {
    "en": ("I'd like a refund for order #{n}", "This is urgent, my account is locked",
           "Please cancel my subscription", "Where is my order #{n}?", "I was charged twice this month",
           "Can someone call me back?", "URGENT: the service has been down since this morning",
           "How do I change my delivery address?", "Still waiting for my refund on #{n}",
           "hi, my card was declined but the money left my account"),
    "es": ("Quiero un reembolso del pedido #{n}", "Es urgente, no puedo entrar en mi cuenta",
           "Por favor, cancelen mi suscripción", "¿Dónde está mi pedido #{n}?", "Me cobraron dos veces este mes"),
    "fr": ("Je voudrais un remboursement pour la commande #{n}", "C'est urgent, mon compte est bloqué",
           "Merci d'annuler mon abonnement", "Où en est ma commande #{n} ?", "J'ai été débité deux fois ce mois-ci"),
}
FOLLOW_UPS = {
    "en": ("Any update?", "Hello? Still waiting", "The order number is #{n}", "ok thanks", "It's urgent please"),
    "es": ("¿Alguna novedad?", "Sigo esperando", "El número de pedido es #{n}", "Gracias"),
    "fr": ("Des nouvelles ?", "J'attends toujours", "Le numéro de commande est #{n}", "Merci"),
}
REPLIES = {
    "en": ("Thanks for reaching out, we're looking into it.", "Sorry about that! Could you share your order number?",
           "Your refund has been issued, allow 3-5 days.", "Done: your subscription is cancelled."),
    "es": ("Gracias por escribirnos, lo estamos revisando.", "¡Lo sentimos! ¿Nos indica el número de pedido?"),
    "fr": ("Merci de nous avoir contactés, nous regardons.",
           "Désolés ! Pouvez-vous nous donner le numéro de commande ?"),
}
STATEMENTS = {  # a message stating another identity of the sender, the fact behind a merge; [0] is for numbers
    "en": ("btw my number is {v}", "you can also reach me at {v}", "it's me again, same person as {v}",
           "I wrote to you before from {v}"),
    "es": ("por cierto, mi número es {v}", "también me pueden escribir a {v}", "soy yo otra vez, {v}"),
    "fr": ("au fait, mon numéro est le {v}", "vous pouvez aussi me joindre à {v}", "c'est encore moi, {v}"),
}
CHANNELS_OF: dict[str, tuple[tuple[Channel, ...], tuple[int, ...]]] = {
    "phone": (("sms", "call"), (3, 1)), "whatsapp": (("whatsapp",), (1,)), "x": (("x_mention", "x_dm"), (1, 1)),
}
TEXT_CHANNELS = ("sms", "whatsapp", "x_dm")  # where a customer would plausibly state a phone number or email
MALFORMED_REASONS = (  # reason -> channels it can happen on
    ("bad_phone", ("sms", "whatsapp", "call")),
    ("empty_body", ("sms", "whatsapp", "x_dm")),
    ("unknown_address", CHANNELS),
    ("bad_timestamp", CHANNELS),
)
BAD_PHONES = ("+1555", "+1 555", "+4420", "+10")
JUNK_TIMESTAMPS = ("2026-13-45T25:61:00Z", "0000-00-00 00:00:00", "yesterday", "", "17672256000000000")
UNKNOWN_NUMBER, UNKNOWN_X_ID = "+16285550199", "777"  # outside every drawn range
CALL_STATUSES = (("completed", "no-answer", "busy", "failed"), (70, 15, 10, 5))
SHARED_LABELS = {"phone": "switchboard", "email": "team mailbox"}


@dataclass(frozen=True, slots=True)
class Knobs:
    """Rates that shape a plan; every one is a probability except `activity`."""

    activity: float = 2.0  # conversations a person starts per week
    second_channel_rate: float = 0.3  # persons who later show up on a second channel
    us_share: float = 0.6  # persons with US numbers (the rest GB)
    phone_rate: float = 0.9
    email_rate: float = 0.85
    whatsapp_rate: float = 0.4
    whatsapp_same_number: float = 0.7  # WhatsApp on the person's phone number
    x_rate: float = 0.35
    spanish_rate: float = 0.1
    french_rate: float = 0.07
    salesforce_rate: float = 0.5  # persons already in each CRM
    zendesk_rate: float = 0.4
    hubspot_rate: float = 0.35
    conflict_rate: float = 0.04  # a person's record gets a twin in the same CRM
    shared_rate: float = 0.06  # persons sharing a switchboard number or team mailbox
    record_merge_rate: float = 0.3  # merges revealed by a new CRM record instead of a message
    outbound_rate: float = 0.4  # an agent reply after a customer message
    media_rate: float = 0.25  # WhatsApp messages with a photo
    malformed_rate: float = 0.02  # malformed items per valid event
    duplicate_rate: float = 0.03  # re-deliveries per valid event

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0 <= value <= (100 if f.name == "activity" else 1):
                raise ValueError(f"traffic knob {f.name}={value!r} is out of range")


@dataclass(frozen=True, slots=True)
class Identity:
    """One way to reach a person, with the forms it takes at each source."""

    kind: IdentityKind
    value: str  # E.164, lower-case email or X user id: what crmhub normalises to
    displays: tuple[tuple[str, str], ...] = ()  # (source, as that source shows it)
    region: str | None = None  # phone region, needed to parse national formats
    handle: str | None = None  # X handle (changeable; the user id is the identity)

    @property
    def key(self) -> str:
        """Identity key; phone and WhatsApp on one number share it."""
        prefix = {"phone": "tel", "whatsapp": "tel"}.get(self.kind, self.kind)
        return f"{prefix}:{self.value}"

    def display(self, source: str) -> str:
        """How `source` shows this identity (the normal form if it has no display)."""
        return next((text for src, text in self.displays if src == source), self.value)


@dataclass(frozen=True, slots=True)
class Person:
    """Ground truth: one human and every identity they use."""

    person_id: str
    first_name: str
    last_name: str
    language: str
    region: str
    tier: str | None
    identities: tuple[Identity, ...]

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def identity(self, kind: IdentityKind) -> Identity | None:
        return next((i for i in self.identities if i.kind == kind), None)


@dataclass(frozen=True, slots=True)
class SharedIdentity:
    """A switchboard or team mailbox on several persons' records: it must never link them."""

    label: str
    identity: Identity
    person_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CrmRecord:
    """A vendor-neutral contact/lead/user as a CRM holds it, messy formats included."""

    record_id: str
    crm: str
    kind: str  # salesforce: contact|lead, zendesk: user, hubspot: contact
    person_id: str
    first_name: str
    last_name: str
    email: str | None = None
    phone: str | None = None
    mobile: str | None = None
    x_handle: str | None = None
    tier: str | None = None
    keys: tuple[str, ...] = ()  # ground truth: identity keys the fields carry
    appears_at: datetime | None = None  # None: exists before the traffic; else created then

    def as_dict(self) -> dict[str, Any]:
        """The record as the brief's vendor-neutral dict, for an emulator seeder."""
        names = ("crm", "kind", "first_name", "last_name", "email", "phone", "mobile", "x_handle", "tier")
        return {n: getattr(self, n) for n in names}


@dataclass(frozen=True, slots=True)
class Merge:
    """The moment two identities of one person become linkable, and the fact that links them."""

    person_id: str
    keys: tuple[str, str]
    at: datetime
    via: Literal["message", "crm_record"]
    event_id: str | None = None  # the message stating the other identity
    record_id: str | None = None  # the CRM record carrying both
    statement: str | None = None  # the message text


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two records of one CRM for one person: crmhub must flag them, not merge them."""

    person_id: str
    crm: str
    record_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Our own addresses on each channel."""

    sms_number: str = "+16285550100"  # SMS and voice long code
    whatsapp_number: str = "+16285550101"
    x_user_id: str = "987654321012345678"
    x_handle: str = "AcmeHelp"


@dataclass(frozen=True, slots=True)
class Event:
    """One item as a channel reports it, plus its ground truth (person, thread, flags)."""

    event_id: str
    channel: Channel
    direction: Direction
    occurred_at: datetime
    from_addr: str  # Twilio: E.164 or "whatsapp:+..."; X: user id
    to_addr: str
    text: str = ""
    media_urls: tuple[str, ...] = ()
    handle: str | None = None  # X handle of the sender
    call_duration: int | None = None  # seconds
    call_status: str | None = None
    recording: bool = False
    in_reply_to: str | None = None  # event_id of the X post this one answers
    dm_conversation_id: str | None = None  # "<smaller id>-<larger id>", numerically
    language: str = "en"
    person_id: str | None = None
    conversation: str | None = None  # ground-truth thread
    malformed: bool = False
    reason: str | None = None  # why it is malformed
    duplicate_of: str | None = None  # a re-delivery of that event
    timestamp_text: str | None = None  # set: the channel reports this junk instead of occurred_at

    @property
    def valid(self) -> bool:
        return not self.malformed and self.duplicate_of is None

    @property
    def external_key(self) -> str:
        """What the channel would use as the item's id: a duplicate reuses its original's."""
        return self.duplicate_of or self.event_id

    @property
    def their_key(self) -> str:
        """Identity key of the customer side of the event."""
        addr = self.from_addr if self.direction == "inbound" else self.to_addr
        return f"x:{addr}" if self.channel.startswith("x_") else "tel:" + addr.removeprefix("whatsapp:")


@dataclass(frozen=True)
class TrafficPlan:
    """A whole scenario: ground truth, CRM starting state and the event stream."""

    seed: int
    start: datetime
    days: int
    knobs: Knobs
    endpoints: Endpoints
    persons: tuple[Person, ...]
    shared: tuple[SharedIdentity, ...]
    records: tuple[CrmRecord, ...]
    merges: tuple[Merge, ...]
    conflicts: tuple[Conflict, ...]
    _events: tuple[Event, ...] | None = field(default=None, compare=False, repr=False)  # set by from_json

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {p.person_id: i for i, p in enumerate(self.persons)}

    @cached_property
    def _inject(self) -> dict[str, str]:
        return {m.event_id: m.statement for m in self.merges if m.event_id and m.statement}

    def person(self, person_id: str) -> Person:
        return self.persons[self._index[person_id]]

    def iter_events(self) -> Iterator[Event]:
        """All events in time order, generated lazily (memory grows with persons, not events)."""
        if self._events is not None:
            return iter(self._events)
        streams = [self._person_events(i, self._inject) for i in range(len(self.persons))]
        return heapq.merge(*streams, self._shared_events(), key=lambda e: e.occurred_at)

    def expected_history(self, person_id: str) -> list[str]:
        """Valid, non-duplicate events of every identity of the person, in time order."""
        if self._events is not None:
            events: Iterator[Event] = iter(self._events)
        else:
            events = self._person_events(self._index[person_id], self._inject)
        return [e.event_id for e in events if e.valid and e.person_id == person_id]

    def expected_threads(self) -> list[list[str]]:
        """Event ids that must thread together, each list in time order, lists by first event."""
        threads: dict[str, list[str]] = {}
        for e in self.iter_events():
            if e.valid and e.conversation:
                threads.setdefault(e.conversation, []).append(e.event_id)
        return list(threads.values())

    def persons_in(self, crm: str, *, initially: bool = False) -> list[str]:
        """Persons with a record in `crm` (only those there before the traffic if `initially`)."""
        return sorted({r.person_id for r in self.records
                       if r.crm == crm and not (initially and r.appears_at is not None)})

    @cached_property
    def blocked_keys(self) -> frozenset[str]:
        """Shared identity keys that must not link persons."""
        return frozenset(s.identity.key for s in self.shared)

    def to_json(self, *, events: bool = True, indent: int | None = None) -> str:
        """The plan as JSON; with `events`, the stream too, so other tools need not regenerate it."""
        data = _dump(self)
        if events:
            data["events"] = list(map(_dump, self.iter_events()))
        return json.dumps(data, ensure_ascii=False, indent=indent)

    @classmethod
    def from_json(cls, text: str) -> TrafficPlan:
        """Inverse of `to_json`; a plan saved without events regenerates them from its seed."""
        data = json.loads(text)
        events = data.pop("events", None)
        plan: TrafficPlan = _decoder(cls)(data)
        if events is not None:
            plan = replace(plan, _events=tuple(map(_decoder(Event), events)))
        return plan

    # -- event generation ---------------------------------------------------

    def _at(self, offset: int) -> datetime:
        return self.start + timedelta(seconds=offset)

    def _person_events(self, index: int, inject: Mapping[str, str]) -> Iterator[Event]:
        """One person's events in time order, redrawn from (seed, person)."""
        person, k = self.persons[index], self.knobs
        rng = random.Random(f"{self.seed}:{person.person_id}")
        usable = [i for i in person.identities if i.kind in CHANNELS_OF]
        if not usable or k.activity <= 0:
            return
        primary = rng.choice(usable)
        others = [i for i in usable if i is not primary]
        second = rng.choice(others) if others and rng.random() < k.second_channel_rate else None
        mean_gap, end = 7 * 86400 / k.activity, self.days * 86400
        t = int(rng.expovariate(1 / mean_gap))
        switch, used_second, session = t + rng.randint(86400, 4 * 86400), False, 0
        while t < end:
            ident = primary
            if second is not None and t >= switch and (not used_second or rng.random() < 0.5):
                ident, used_second = second, True
            channels, weights = CHANNELS_OF[ident.kind]
            channel = rng.choices(channels, weights)[0]
            events = self._session(rng, person, ident, channel, t, f"{person.person_id}-{session:03d}", inject)
            last = t
            for offset, event in events:
                if offset < end:
                    yield event
                last = max(last, offset)
            t, session = last + int(QUIET.total_seconds()) + int(rng.expovariate(1 / mean_gap)), session + 1

    def _session(self, rng: random.Random, person: Person, ident: Identity, channel: Channel, t: int,
                 conv: str, inject: Mapping[str, str]) -> list[tuple[int, Event]]:
        """One thread (a customer contact and its follow-ups), with its malformed and repeated items."""
        k, ep, lang = self.knobs, self.endpoints, person.language
        is_x = channel.startswith("x_")
        ours = ep.x_user_id if is_x else ep.sms_number if channel in ("sms", "call") else ep.whatsapp_number
        theirs = ident.value
        if channel == "whatsapp":
            ours, theirs = "whatsapp:" + ours, "whatsapp:" + theirs
        dm_id = "-".join(sorted((ours, theirs), key=int)) if channel == "x_dm" else None
        # the script: (direction, extra fields) per step, then times
        steps: list[tuple[Direction, dict[str, Any]]] = []
        if channel == "call":
            status = rng.choices(*CALL_STATUSES)[0]
            steps.append(("inbound", _call(rng, status)))
            if status != "completed" and rng.random() < min(1.0, 2 * k.outbound_rate):
                steps.append(("outbound", _call(rng, "completed")))  # the callback
        else:
            steps.append(("inbound", {"text": _phrase(rng, OPENERS[lang])}))
            for _ in range(rng.choice((0, 0, 1, 1, 2)) if channel != "x_mention" else 1):
                if rng.random() < k.outbound_rate:
                    steps.append(("outbound", {"text": rng.choice(REPLIES[lang])}))
                if channel != "x_mention" or (steps[-1][0] == "outbound" and rng.random() < 0.5):
                    steps.append(("inbound", {"text": _phrase(rng, FOLLOW_UPS[lang])}))
            if channel != "x_mention" and rng.random() < k.outbound_rate:
                steps.append(("outbound", {"text": rng.choice(REPLIES[lang])}))
        out: list[tuple[int, Event]] = []
        previous: str | None = None
        for n, (direction, extra) in enumerate(steps, 1):
            if n > 1:
                t += rng.randint(120, 5400)  # minutes to 1.5 h: well inside FOLLOW_UP
            eid = f"{conv}-{n}"
            if channel == "whatsapp" and direction == "inbound" and rng.random() < k.media_rate:
                extra["media_urls"] = (_media_url(rng),)
                if rng.random() < 0.4:
                    extra["text"] = ""  # a photo alone is a valid message
            if eid in inject:
                extra["text"] = inject[eid]
            if channel == "x_mention":
                who = ep.x_handle if direction == "inbound" else ident.handle
                extra["text"] = f"@{who} {extra['text']}"
                extra["in_reply_to"] = previous
            if is_x:
                extra["handle"] = ident.handle if direction == "inbound" else ep.x_handle
            src, dst = (theirs, ours) if direction == "inbound" else (ours, theirs)
            out.append((t, Event(eid, channel, direction, self._at(t), src, dst, dm_conversation_id=dm_id,
                                 language=lang, person_id=person.person_id, conversation=conv, **extra)))
            previous = eid
        for _, event in list(out):  # re-deliveries and malformed neighbours, drawn per valid event
            offset = int((event.occurred_at - self.start).total_seconds())
            if rng.random() < k.duplicate_rate:
                out.append((offset, replace(event, event_id=event.event_id + "-dup", duplicate_of=event.event_id)))
            if rng.random() < k.malformed_rate:
                at = offset + rng.randint(1, 59)
                out.append((at, self._malformed(rng, event, at, lang, ident.handle)))
        out.sort(key=lambda pair: pair[1].occurred_at)
        return out

    def _malformed(self, rng: random.Random, near: Event, t: int, lang: str, handle: str | None) -> Event:
        """A broken inbound item from the same sender and channel as `near`."""
        reason = rng.choice([r for r, chans in MALFORMED_REASONS if near.channel in chans])
        inbound = near if near.direction == "inbound" else replace(near, from_addr=near.to_addr,
                                                                    to_addr=near.from_addr)
        prefix = "whatsapp:" if near.channel == "whatsapp" else ""
        extra: dict[str, Any] = {"text": _phrase(rng, OPENERS[lang]) if near.channel != "call" else "",
                                 "handle": handle if near.channel.startswith("x_") else None}
        if near.channel == "call":
            extra.update(_call(rng, "completed"))
        if reason == "bad_phone":
            extra.update(from_addr=prefix + rng.choice(BAD_PHONES), person_id=None)
        elif reason == "empty_body":
            extra.update(text="")
        elif reason == "unknown_address":
            to = UNKNOWN_X_ID if near.channel.startswith("x_") else prefix + UNKNOWN_NUMBER
            extra["to_addr"] = to
            if near.channel == "x_dm":
                extra["dm_conversation_id"] = "-".join(sorted((to, inbound.from_addr), key=int))
        else:
            extra.update(timestamp_text=rng.choice(JUNK_TIMESTAMPS))
        return replace(inbound, event_id=f"{near.event_id}-bad", occurred_at=self._at(t), direction="inbound",
                       media_urls=(), in_reply_to=None, conversation=None, malformed=True, reason=reason,
                       duplicate_of=None, **extra)

    def _shared_events(self) -> Iterator[Event]:
        """Calls from switchboards: valid items that belong to no single person."""
        rng, end, events = random.Random(f"{self.seed}:shared"), self.days * 86400, []
        for n, shared in enumerate(s for s in self.shared if s.identity.kind == "phone"):
            t, j = int(rng.expovariate(1 / (3 * 86400))), 0
            while t < end:
                events.append(Event(f"shared{n}-{j}", "call", "inbound", self._at(t), shared.identity.value,
                                    self.endpoints.sms_number, conversation=f"shared{n}-{j}",
                                    **_call(rng, "completed")))
                t, j = t + int(QUIET.total_seconds()) + int(rng.expovariate(1 / (3 * 86400))), j + 1
        yield from sorted(events, key=lambda e: e.occurred_at)


def _phrase(rng: random.Random, table: tuple[str, ...]) -> str:
    return rng.choice(table).replace("{n}", str(rng.randint(10000, 99999)))


def _call(rng: random.Random, status: str) -> dict[str, Any]:
    done = status == "completed"
    return {"call_status": status, "call_duration": rng.randint(20, 900) if done else 0,
            "recording": done and rng.random() < 0.5}


def _media_url(rng: random.Random) -> str:
    return (f"https://api.twilio.com/2010-04-01/Accounts/AC{rng.getrandbits(128):032x}/Messages/"
            f"MM{rng.getrandbits(128):032x}/Media/ME{rng.getrandbits(128):032x}")


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in ascii_text if c in string.ascii_letters)


# -- plan generation ---------------------------------------------------------


def generate(seed: int, persons: int = 50, days: int = 7, start: datetime = DEFAULT_START,
             **knobs: float) -> TrafficPlan:
    """Draw a plan; the same seed and knobs always give the same plan.

    Args:
        seed: the only source of randomness.
        persons: how many people exist (some never write).
        days: length of the simulated window starting at `start`.
        start: aware datetime; converted to UTC.
        **knobs: fields of `Knobs`.

    Raises:
        TypeError: an unknown knob.
        ValueError: a knob out of range, a naive `start`, or more persons than fictional numbers.
    """
    unknown = sorted(set(knobs) - {f.name for f in fields(Knobs)})
    if unknown:
        raise TypeError(f"unknown traffic knob(s) {unknown}; known: {[f.name for f in fields(Knobs)]}")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    k, rng = Knobs(**knobs), random.Random(seed)
    numbers = _NumberPool(rng)
    people = _draw_persons(rng, k, persons, numbers)
    shared = _draw_shared(rng, k, people, numbers)
    records, conflicts = _draw_records(rng, k, people, shared)
    plan = TrafficPlan(seed, start.astimezone(UTC), days, k, Endpoints(), tuple(people), tuple(shared),
                       tuple(records), (), ())
    merges = _draw_merges(rng, plan, records, conflicts)
    return replace(plan, records=tuple(records), merges=tuple(merges), conflicts=tuple(conflicts))


class _NumberPool:
    """Distinct fictional numbers per region, drawn without materialising the pool."""

    SIZES: ClassVar[dict[str, int]] = {"US": len(US_AREAS) * 100, "GB": len(GB_BLOCKS) * 1000}

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, {region: set[int]() for region in self.SIZES}

    def take(self, region: str, kind: IdentityKind) -> Identity:
        size, used = self.SIZES[region], self.used[region]
        if len(used) >= size * 0.9:  # keep redraws cheap
            raise ValueError(f"more than {int(size * 0.9)} {region} numbers needed; "
                             "use fewer persons or change us_share")
        i = self.rng.randrange(size)
        while i in used:
            i = self.rng.randrange(size)
        used.add(i)
        if region == "US":
            a, b, c = US_AREAS[i // 100], "555", f"{100 + i % 100:04d}"
        else:
            (a, b), c = GB_BLOCKS[i // 1000], f"0{i % 1000:03d}"
        shown = tuple((s, self.rng.choice(PHONE_FORMATS[region]).format(a=a, b=b, c=c)) for s in DISPLAY_SOURCES)
        return Identity(kind, f"+{COUNTRY_CODE[region]}{a}{b}{c}", shown, region=region)


def _draw_persons(rng: random.Random, k: Knobs, count: int, numbers: _NumberPool) -> list[Person]:
    taken: set[str] = set()  # e-mail local parts and X handles already given out
    people = []
    for i in range(count):
        roll = rng.random()
        lang = "es" if roll < k.spanish_rate else "fr" if roll < k.spanish_rate + k.french_rate else "en"
        region = "US" if rng.random() < k.us_share else "GB"
        first, last = rng.choice(FIRST[lang]), rng.choice(LAST[lang])
        tier = rng.choices(("gold", "silver", None), (15, 30, 55))[0]
        has_phone, has_email, has_x, has_wa = (rng.random() < r for r in (
            k.phone_rate, k.email_rate, k.x_rate, k.whatsapp_rate))
        if not (has_phone or has_x or has_wa):
            has_phone = True  # everyone can be reached on some channel
        ids: list[Identity] = []
        phone = numbers.take(region, "phone") if has_phone else None
        if phone:
            ids.append(phone)
        if has_wa:
            same = phone is not None and rng.random() < k.whatsapp_same_number
            ids.append(replace(phone, kind="whatsapp") if same and phone else numbers.take(region, "whatsapp"))
        if has_email:
            fn, ln = _slug(first).lower(), _slug(last).lower()
            local = _unique(taken, rng.choice((f"{fn}.{ln}", fn + ln, f"{fn[0]}.{ln}", f"{fn}_{ln}")), "email:")
            email = f"{local}@{rng.choice(EMAIL_DOMAINS)}"
            ids.append(Identity("email", email, tuple((s, rng.choice(EMAIL_STYLES)(email)) for s in DISPLAY_SOURCES)))
        if has_x:
            # old accounts have short ids, new ones 19 digits: "<smaller>-<larger>" must compare numerically
            uid = rng.randrange(10**6, 10**10) if rng.random() < 0.3 else rng.randrange(10**18, 2 * 10**18)
            while "x:" + str(uid) in taken:
                uid += 1
            taken.add(f"x:{uid}")
            handle = _unique(taken, (_slug(first) + _slug(last))[:12], "handle:")
            ids.append(Identity("x", str(uid), tuple(
                (s, _as_written(s, rng.choice(HANDLE_STYLES).format(h=handle, lo=handle.lower())))
                for s in DISPLAY_SOURCES), handle=handle))
        people.append(Person(f"p{i + 1:05d}", first, last, lang, region, tier, tuple(ids)))
    return people


def _unique(taken: set[str], base: str, scope: str) -> str:
    """`base`, or base + the smallest number not yet taken in `scope`."""
    name, n = base, 1
    while scope + name.lower() in taken:
        n += 1
        name = f"{base}{n}"
    taken.add(scope + name.lower())
    return name


def _draw_shared(rng: random.Random, k: Knobs, people: list[Person], numbers: _NumberPool) -> list[SharedIdentity]:
    members = rng.sample(range(len(people)), round(len(people) * k.shared_rate))
    shared: list[SharedIdentity] = []
    while len(members) >= 2:
        size = min(len(members), rng.randint(2, 4))
        group, members = sorted(members[:size]), members[size:]
        if rng.random() < 0.5:
            ident = numbers.take(people[group[0]].region, "phone")
        else:
            box = f"{rng.choice(('support', 'accounts', 'info', 'ops'))}{len(shared) + 1}@{rng.choice(EMAIL_DOMAINS)}"
            ident = Identity("email", box, tuple((s, rng.choice(EMAIL_STYLES)(box)) for s in DISPLAY_SOURCES))
        shared.append(SharedIdentity(SHARED_LABELS[ident.kind], ident, tuple(people[i].person_id for i in group)))
    return shared


SLOTS: dict[str, tuple[str, ...]] = {  # record fields an identity can fill, preferred first
    "phone": ("phone", "mobile"), "whatsapp": ("mobile", "phone"), "email": ("email",), "x": ("x_handle",),
}


def _place(slots: dict[str, Identity], ident: Identity, keep: Identity | None = None) -> bool:
    """Put `ident` in a free field, else over anything but `keep`; False if it cannot go anywhere."""
    for slot in SLOTS[ident.kind]:
        if slot not in slots:
            slots[slot] = ident
            return True
    for slot in SLOTS[ident.kind]:
        if keep is None or slots[slot] is not keep:
            slots[slot] = ident
            return True
    return False


def _record(counts: Counter[str], crm: str, person: Person, slots: dict[str, Identity], kind: str | None = None,
            appears_at: datetime | None = None, style: int = 0) -> CrmRecord:
    """A record with the next id of `crm`, showing each identity the way that CRM does (`style` picks another)."""
    counts[crm] += 1
    values = {}
    for name, ident in slots.items():
        shown = [text for _, text in ident.displays] + [ident.value]
        values[name] = shown[(DISPLAY_SOURCES.index(crm) + style) % len(shown)]
    kind = kind or {"salesforce": "contact", "zendesk": "user", "hubspot": "contact"}[crm]
    keys = tuple(dict.fromkeys(i.key for i in slots.values()))
    return CrmRecord(f"{crm}-{counts[crm]:05d}", crm, kind, person.person_id, person.first_name, person.last_name,
                     tier=person.tier, keys=keys, appears_at=appears_at, **values)


def _draw_records(rng: random.Random, k: Knobs, people: list[Person],
                  shared: list[SharedIdentity]) -> tuple[list[CrmRecord], list[Conflict]]:
    shared_of = {pid: s.identity for s in shared for pid in s.person_ids}
    counts: Counter[str] = Counter()
    records, conflicts = [], []
    rates = {"salesforce": k.salesforce_rate, "zendesk": k.zendesk_rate, "hubspot": k.hubspot_rate}
    chances = {"email": 0.9, "phone": 0.8, "whatsapp": 0.6, "x": 0.35}  # a field is filled in
    for person in people:
        crms = [c for c in CRMS if rng.random() < rates[c]]
        box = shared_of.get(person.person_id)
        if box and not crms:
            crms = [rng.choice(CRMS)]  # a shared identity only matters on records
        phone = person.identity("phone")
        own = [i for i in person.identities if not (i.kind == "whatsapp" and phone and i.value == phone.value)]
        prior: dict[str, Identity] = {}  # identities on this person's earlier records
        for crm in crms:
            slots: dict[str, Identity] = {}
            if box:
                _place(slots, box)
            for ident in own:
                if rng.random() < chances[ident.kind]:
                    _place(slots, ident, keep=box)
            placed = {i.key for i in slots.values()}
            if prior and not placed & prior.keys():  # a person's records always connect to each other
                any(_place(slots, prior[key], keep=box) for key in sorted(prior))
            if not slots and own:
                _place(slots, own[0])
            kind = "lead" if crm == "salesforce" and rng.random() < 0.25 else None
            record = _record(counts, crm, person, slots, kind)
            records.append(record)
            mine = [(name, i) for name, i in slots.items() if i is not box]
            prior.update((i.key, i) for _, i in mine)
            if mine and rng.random() < k.conflict_rate:  # a twin sharing one identity, shown differently
                name, ident = rng.choice(mine)
                twin_kind = ("contact" if record.kind == "lead" else "lead") if crm == "salesforce" else None
                twin = _record(counts, crm, person, {name: ident}, twin_kind, style=1)
                records.append(twin)
                conflicts.append(Conflict(person.person_id, crm, (record.record_id, twin.record_id)))
    return records, conflicts


def _draw_merges(rng: random.Random, plan: TrafficPlan, records: list[CrmRecord],
                 conflicts: list[Conflict]) -> list[Merge]:
    """Join each person's identity islands with a fact; a late CRM record is appended to `records`."""
    blocked, merges = plan.blocked_keys, []
    counts = Counter(r.crm for r in records)
    by_person: dict[str, list[CrmRecord]] = {}
    for r in records:
        by_person.setdefault(r.person_id, []).append(r)
    end = plan.days * 86400
    for index, person in enumerate(plan.persons):
        mine = by_person.get(person.person_id, [])
        events = [e for e in plan._person_events(index, {}) if e.valid]
        by_key = {i.key: i for i in person.identities}
        parent: dict[str, str] = {}  # union-find over identity keys
        find = partial(_root, parent)
        first_seen: dict[str, int] = {}  # seconds after start when crmhub can first see a key
        for r in mine:
            keys = [key for key in r.keys if key not in blocked]
            for key in keys:
                first_seen.setdefault(key, 0)
                parent[find(key)] = find(keys[0])
        for e in events:
            first_seen.setdefault(e.their_key, int((e.occurred_at - plan.start).total_seconds()))
        islands: dict[str, list[str]] = {}
        for key in sorted(first_seen, key=lambda key: (first_seen[key], key)):
            islands.setdefault(find(key), []).append(key)
        groups = list(islands.values())
        linked = set(groups[0]) if groups else set()
        texts = [e for e in events if e.direction == "inbound" and e.channel in TEXT_CHANNELS]
        for island in groups[1:]:
            seen = first_seen[island[0]]
            inside = [e for e in texts if e.their_key in island]
            after = [e for e in texts if e.their_key in linked and e.occurred_at >= plan._at(seen)]
            free = [c for c in CRMS if all(r.crm != c for r in mine)]
            if (inside or after) and not (free and rng.random() < plan.knobs.record_merge_rate):
                # one of the new identity's messages (its first contact or a later one) states an old
                # identity, or else a later message from the old side states the new one
                event = rng.choice(inside) if inside else after[0]
                texts.remove(event)  # one statement per message
                stated = rng.choice(sorted(linked if inside else island))
                phrases = STATEMENTS[person.language][0 if stated.startswith("tel:") else 1:]
                statement = rng.choice(phrases).format(v=by_key[stated].display("text"))
                merges.append(Merge(person.person_id, (event.their_key, stated), event.occurred_at, "message",
                                    event_id=event.event_id, statement=statement))
            else:  # an agent creates a record carrying one identity of each side
                crm = rng.choice(free or list(CRMS))
                a, b = by_key[rng.choice(sorted(linked))], by_key[island[0]]
                slots: dict[str, Identity] = {}
                _place(slots, a)
                _place(slots, b, keep=a)
                at = plan._at(min(end - 1, seen + rng.randint(3600, 2 * 86400)))
                record = _record(counts, crm, person, slots, appears_at=at)
                if not free:
                    twins = tuple(r.record_id for r in mine if r.crm == crm)
                    conflicts.append(Conflict(person.person_id, crm, (*twins, record.record_id)))
                records.append(record)
                mine.append(record)
                merges.append(Merge(person.person_id, (a.key, b.key), at, "crm_record", record_id=record.record_id))
            linked.update(island)
    return sorted(merges, key=lambda m: (m.at, m.person_id))


def _root(parent: dict[str, str], key: str) -> str:
    while parent.setdefault(key, key) != key:
        key = parent[key]
    return key


def summary(plan: TrafficPlan) -> dict[str, Any]:
    """Counts for a `crmhub sandbox --traffic` printout (one pass over the stream)."""
    channel: Counter[str] = Counter()
    kind: Counter[str] = Counter()
    direction: Counter[str] = Counter()
    reasons: Counter[str | None] = Counter()
    threads: set[str] = set()
    for e in plan.iter_events():
        channel[e.channel] += 1
        direction[e.direction] += 1
        kind["malformed" if e.malformed else "duplicate" if e.duplicate_of else "valid"] += 1
        if e.malformed:
            reasons[e.reason] += 1
        elif e.valid and e.conversation:
            threads.add(e.conversation)
    in_crm = {crm: len(plan.persons_in(crm)) for crm in CRMS}
    with_record = {r.person_id for r in plan.records}
    return {
        "seed": plan.seed, "days": plan.days, "persons": len(plan.persons),
        "events": sum(kind.values()), "by_channel": dict(sorted(channel.items())),
        "by_kind": dict(sorted(kind.items())), "by_direction": dict(sorted(direction.items())),
        "malformed_reasons": dict(sorted(reasons.items())), "threads": len(threads),
        "records": dict(Counter(r.crm for r in plan.records)), "persons_in_crm": in_crm,
        "persons_in_no_crm": len(plan.persons) - len(with_record),
        "merges": dict(Counter(m.via for m in plan.merges)), "conflicts": len(plan.conflicts),
        "shared_identities": dict(Counter(s.label for s in plan.shared)),
    }


# -- JSON ---------------------------------------------------------------------


@cache
def _names(tp: Any) -> tuple[str, ...]:
    return tuple(f.name for f in fields(tp) if not f.name.startswith("_"))


def _dump(obj: Any) -> Any:
    if obj is None or isinstance(obj, str | int | float):
        return obj
    if isinstance(obj, datetime):
        return obj.isoformat().replace("+00:00", "Z")
    if isinstance(obj, tuple | list):
        return [_dump(v) for v in obj]
    cls: Any = type(obj)  # a plan dataclass
    return {name: _dump(getattr(obj, name)) for name in _names(cls)}


def _same(value: Any) -> Any:
    return value


_DECODERS: dict[Any, Callable[[Any], Any]] = {}


def _decoder(tp: Any) -> Callable[[Any], Any]:
    """A function rebuilding a `tp` from `_dump` output, built once per type from its annotations."""
    if tp in _DECODERS:
        return _DECODERS[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    decode: Callable[[Any], Any] = _same
    if origin in (typing.Union, types.UnionType):
        inner = _decoder(next(a for a in args if a is not type(None)))
        decode = _same if inner is _same else lambda v: None if v is None else inner(v)
    elif origin is tuple and args[-1] is Ellipsis:
        item = _decoder(args[0])
        decode = lambda v: tuple(map(item, v))  # noqa: E731
    elif origin is tuple:
        parts = [_decoder(a) for a in args]
        decode = lambda v: tuple(f(x) for f, x in zip(parts, v, strict=True))  # noqa: E731
    elif tp is datetime:
        decode = datetime.fromisoformat
    elif hasattr(tp, "__dataclass_fields__"):
        hints = typing.get_type_hints(tp)
        plan = [(name, _decoder(hints[name])) for name in _names(tp)]
        decode = lambda v: tp(**{n: v[n] if d is _same else d(v[n]) for n, d in plan if n in v})  # noqa: E731
    _DECODERS[tp] = decode
    return decode


__all__ = [
    "CHANNELS", "CRMS", "DEFAULT_START", "FOLLOW_UP", "QUIET", "Conflict", "CrmRecord", "Endpoints", "Event",
    "Identity", "Knobs", "Merge", "Person", "SharedIdentity", "TrafficPlan", "generate", "summary",
]
