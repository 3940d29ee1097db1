"""What each emulated CRM holds of crmhub's work, read the same way for Salesforce, Zendesk and HubSpot.

The end-to-end tests ask every CRM the same questions: which cases crmhub
opened (by its conversation key), which messages sit on which case (by text
and by crmhub's idempotency key, wherever that CRM keeps it), and how many
contacts hold a phone. Each view answers them from the emulator's state, so
an assertion sees what the CRM would really hold, not what crmhub says it
did; and each view seeds what an account has before crmhub runs.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from crmhub.sandbox import EmulatorServer

OURS = "+14155550100"  # the sandbox's Twilio number (settings.yaml: channels.twilio.numbers)
FOLD_HEADER = re.compile(r"(?:^|\n\n)\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, [^\n]*:\n")


def zendesk_messages(comment: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(text, crmhub key) of each message a Zendesk comment carries: one, or several folded (docs/connectors.md)."""
    custom = (comment.get("metadata") or {}).get("custom") or {}
    keys = custom.get("crmhub_keys")
    if not keys:
        return [(comment["body"], str(custom.get("crmhub_key", "")))]
    texts = FOLD_HEADER.split(comment["body"])[1:]
    assert len(texts) == len(keys), comment["body"]
    return list(zip(texts, map(str, keys), strict=True))


def zendesk_bodies(em: Any, ticket_id: int) -> list[str]:
    """The texts of the messages on a Zendesk ticket, folded ones apart, in order."""
    return [text for c in em.comments(ticket_id) for text, _ in zendesk_messages(c)]


@dataclass(frozen=True)
class Written:
    """One message as the CRM holds it: its text, crmhub's key for it, the cases it sits on."""

    text: str
    key: str
    cases: tuple[str, ...]


class CrmView:
    """One CRM emulator, seen through the questions the tests ask of it."""

    name: ClassVar[str]
    bulk_writes: ClassVar[str]  # path regex of the bulk writes crmhub's deliveries make

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.em: Any = server.emulator

    def seed(self) -> None:
        """The account's own setup before crmhub runs (queues, groups)."""

    def add_known(self, phone: str, name: str) -> None:
        """A customer the account already has, with a phone in E.164."""
        raise NotImplementedError

    def ready(self) -> None:
        """Called after seeding, before crmhub runs."""

    def cases(self) -> dict[str, str]:
        """crmhub's cases: record id -> its case key (`<conversation>#<seq>`)."""
        raise NotImplementedError

    def written(self) -> list[Written]:
        """Every message record on the account (crmhub's or not)."""
        raise NotImplementedError

    def phones(self) -> Counter[str]:
        """How many contacts hold each phone."""
        raise NotImplementedError


class SalesforceView(CrmView):
    """Cases keyed by `Crmhub_Conversation__c`; messages are Tasks keyed by `Crmhub_Key__c` on their Case."""

    name = "salesforce"
    bulk_writes = "/composite"  # the Composite call and any collections call on its own

    def seed(self) -> None:
        for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
            self.em.add_queue(name.replace("_", " "), name)

    def add_known(self, phone: str, name: str) -> None:
        self.em.insert("Contact", FirstName="Known", LastName=name, Phone=phone)

    def cases(self) -> dict[str, str]:
        return {c["Id"]: c["Crmhub_Conversation__c"] for c in self.em.records("Case")}

    def written(self) -> list[Written]:
        return [Written(t["Description"], t["Crmhub_Key__c"], (t["WhatId"],) if t["WhatId"] else ())
                for t in self.em.records("Task")]

    def phones(self) -> Counter[str]:
        return Counter(c["Phone"] for c in self.em.records("Contact") if c.get("Phone"))


class ZendeskView(CrmView):
    """Tickets keyed by `external_id`; messages are comments keyed by the audit metadata `custom.crmhub_key`."""

    name = "zendesk"
    bulk_writes = r"/(users|tickets)/(create_many|update_many)\.json"

    def add_known(self, phone: str, name: str) -> None:
        self.em.add_user(name=f"Known {name}", phone=phone)

    def ready(self) -> None:
        self.em.clock.advance(120)  # the incremental user export leaves out the last minute's changes

    def cases(self) -> dict[str, str]:
        return {str(t["id"]): t["external_id"] for t in self.em.tickets() if t.get("external_id")}

    def written(self) -> list[Written]:
        return [Written(text, key, (str(t["id"]),))
                for t in self.em.tickets() for c in self.em.comments(t["id"]) for text, key in zendesk_messages(c)]

    def phones(self) -> Counter[str]:
        return Counter(u["phone"] for u in self.em.users() if u.get("phone") and u.get("role") == "end-user")


class HubSpotView(CrmView):
    """Tickets keyed by `crmhub_conversation`; messages are communications keyed by `crmhub_key`, associated
    with their ticket."""

    name = "hubspot"
    bulk_writes = r"/batch/(upsert|create|update|associate/default)"

    def add_known(self, phone: str, name: str) -> None:
        self.em.add("contacts", firstname="Known", lastname=name, mobilephone=phone)

    def cases(self) -> dict[str, str]:
        return {t["id"]: t["properties"]["crmhub_conversation"] for t in self.em.objects("tickets")
                if t["properties"].get("crmhub_conversation")}

    def written(self) -> list[Written]:
        return [Written(m["properties"].get("hs_communication_body", ""), m["properties"].get("crmhub_key", ""),
                        tuple(str(t) for t in self.em.associated("communications", m["id"], "tickets")))
                for m in self.em.objects("communications")]

    def phones(self) -> Counter[str]:
        return Counter(phone for c in self.em.objects("contacts")
                       for phone in {c["properties"].get("phone"), c["properties"].get("mobilephone")} if phone)


VIEWS: dict[str, type[CrmView]] = {"salesforce": SalesforceView, "zendesk": ZendeskView, "hubspot": HubSpotView}


def conversation_of(sender: str) -> str:
    """crmhub's conversation key of an SMS exchange between `sender` and our number."""
    return f"sms:{OURS}:{sender}"


@dataclass(frozen=True)
class Traffic:
    """Inbound SMS from known customers and from unknown senders: each body (unique) -> its sender."""

    known: tuple[str, ...]
    unknown: tuple[str, ...]
    senders: dict[str, str]


def sms_traffic(twilio: EmulatorServer, views: Sequence[CrmView], *, known: int, unknown: int, messages: int,
                seed: int) -> Traffic:
    """Seed every CRM with the known customers, and Twilio with `messages` inbound SMS, 10 s apart.

    Every 8th message comes from an unknown sender (nobody in any CRM: crmhub
    creates their contact), the others from a random sender of either kind.
    """
    tw: Any = twilio.emulator
    known_phones = tuple(f"+1415555{1000 + n}" for n in range(known))
    unknown_phones = tuple(f"+1415555{2000 + n}" for n in range(unknown))
    for view in views:
        view.seed()
        for n, phone in enumerate(known_phones):
            view.add_known(phone, f"Person{n}")
        view.ready()
    tw.add_number(OURS)
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(minutes=30)
    senders: dict[str, str] = {}
    for n in range(messages):
        sender = unknown_phones[n % unknown] if n % 8 == 0 else rng.choice(known_phones + unknown_phones)
        body = f"message {n:03d}: where is my order?"
        tw.receive_message(sender, OURS, body, at=start + timedelta(seconds=10 * n))
        senders[body] = sender
    return Traffic(known_phones, unknown_phones, senders)


def assert_each_message_once(view: CrmView, senders: Mapping[str, str]) -> None:
    """Every message exactly once (by its text and by crmhub's key), on the one case of its conversation.

    Args:
        senders: each message's text -> its sender.
    """
    written = view.written()
    cases = view.cases()
    by_text = Counter(w.text for w in written)
    by_key = Counter(w.key for w in written)
    assert set(by_text) == set(senders), f"{view.name}: missing {set(senders) - set(by_text)}, " \
                                         f"unexpected {set(by_text) - set(senders)}"
    assert max(by_text.values()) == 1, f"{view.name}: doubled {[t for t, n in by_text.items() if n > 1]}"
    assert len(by_key) == len(senders) and "" not in by_key, f"{view.name}: keys {sorted(by_key)}"
    assert max(by_key.values()) == 1, f"{view.name}: doubled keys {[k for k, n in by_key.items() if n > 1]}"

    # One case per conversation (here one per sender), each message on its own conversation's case.
    cases_of: dict[str, set[str]] = defaultdict(set)
    for case_id, key in cases.items():
        cases_of[key.rpartition("#")[0]].add(case_id)
    assert all(len(ids) == 1 for ids in cases_of.values()), f"{view.name}: {dict(cases_of)}"
    for message in written:
        assert len(message.cases) == 1 and message.cases[0] in cases, f"{view.name}: {message}"
        assert cases[message.cases[0]].rpartition("#")[0] == conversation_of(senders[message.text]), message
    assert set(cases_of) == {conversation_of(s) for s in senders.values()}, f"{view.name}: a case without message"


def duplicate_contacts(view: CrmView, phones: Sequence[str]) -> dict[str, int]:
    """Phones among `phones` that more than one contact holds (for reports, not assertions)."""
    held = view.phones()
    return {phone: held[phone] for phone in phones if held[phone] > 1}
