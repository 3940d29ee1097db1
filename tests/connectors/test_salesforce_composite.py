"""The Salesforce connector writes a delivery batch in one Composite call (issue 13).

Against the emulator through simple-salesforce; assertions look at what the
emulated org holds and at the calls it counted, never at what the connector
says it did alone.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmhub.connectors._retry import Retrier, RetryPolicy
from crmhub.connectors.salesforce import ContactObject, SalesforceAuth, SalesforceCrm
from crmhub.connectors.salesforce_composite import Ride, Subrequest, composite_bodies
from crmhub.model import (
    CaseSpec, Channel, Direction, HistoryWrite, Identity, IdentityKind, Interaction, QueueTarget, person_key,
)
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.salesforce import SalesforceEmulator
from crmhub.sandbox.salesforce.models import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

API = "/services/data/v59.0"
OURS = "+14155550100"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
OBJECTS = [ContactObject("Contact", {"phone": ["Phone", "MobilePhone"], "email": ["Email"]}),
           ContactObject("Lead", {"phone": ["Phone"], "email": ["Email"]})]


@pytest.fixture
def em(salesforce_sandbox: EmulatorServer) -> SalesforceEmulator:
    emulator: SalesforceEmulator = salesforce_sandbox.emulator  # type: ignore[assignment]  # the fixture's
    emulator.add_queue("Support", "Support_Queue")
    return emulator


@pytest.fixture
def crm(salesforce_sandbox: EmulatorServer, em: SalesforceEmulator) -> SalesforceCrm:
    def sleep(seconds: float) -> None:
        em.clock.advance(seconds)

    connector = SalesforceCrm(
        instance_url="https://sandbox.my.salesforce.com", base_url=salesforce_sandbox.url,
        auth=SalesforceAuth("client_credentials", DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET), objects=OBJECTS,
        queues={"support": "Support_Queue"},
        retrier=Retrier(RetryPolicy(max_attempts=4), sleep=sleep, rng=random.Random(1)))
    connector.queue_ids()  # read once per connector, as a running daemon has
    em.calls.clear()
    return connector


def item(n: int, customer: str) -> Interaction:
    them, us = Identity(IdentityKind.PHONE, customer), Identity(IdentityKind.PHONE, OURS)
    return Interaction(channel=Channel.SMS, direction=Direction.INBOUND, external_id=f"SM{n:032d}",
                       conversation_key=f"sms:{OURS}:{customer}", sender=them, recipient=us, text=f"message {n}",
                       occurred_at=START + timedelta(minutes=n))


def new_customer(n: int, person_id: int, *, lead: bool = False, **kwargs: Any) -> HistoryWrite:
    """A first message from an unknown customer: a new Contact (or Lead) and a new Case."""
    message = item(n, f"+1415555{1000 + person_id}")
    spec = CaseSpec(key=f"{message.conversation_key}#1", target=QueueTarget("support", "High"),
                    fields={"Subject": "SMS conversation"})
    return HistoryWrite(key=message.key, person_id=person_id, interaction=message,
                        fields={"Description": message.text}, contact_object="Lead" if lead else "Contact",
                        new_contact=(message.customer,), new_case=spec, **kwargs)


def follow_up(n: int, person_id: int, contact_id: str, case_id: str, **kwargs: Any) -> HistoryWrite:
    message = item(n, f"+1415555{1000 + person_id}")
    return HistoryWrite(key=message.key, person_id=person_id, interaction=message,
                        fields={"Description": message.text}, contact_object="Contact", contact_id=contact_id,
                        case_id=case_id, **kwargs)


def composites(em: SalesforceEmulator) -> dict[str, int]:
    return {endpoint: n for endpoint, n in em.calls.items() if n}


def task(em: SalesforceEmulator, key: str) -> dict[str, Any]:
    [found] = [t for t in em.records("Task") if t["Crmhub_Key__c"] == key]
    return found


def test_new_customers_follow_ups_a_reopen_and_a_relink_are_one_call(crm: SalesforceCrm,
                                                                     em: SalesforceEmulator) -> None:
    known = em.insert("Contact", LastName="Known", Phone="+14155552000")
    other = em.insert("Contact", LastName="Merged away", Phone="+14155552001")
    open_case = em.insert("Case", Subject="open", ContactId=known)
    closed_case = em.insert("Case", Subject="closed", ContactId=known, Status="Closed")
    moved_case = em.insert("Case", Subject="moved", ContactId=other)
    moved_task = em.insert("Task", Subject="old", WhoId=other, WhatId=moved_case, Crmhub_Key__c="old-key",
                           TaskSubtype="Task")
    relink = follow_up(0, 9, known, moved_case, relink=True)
    relink = HistoryWrite(**{**relink.__dict__, "key": "old-key"})
    writes = [new_customer(1, 1), new_customer(2, 2, lead=True), new_customer(3, 1),
              follow_up(4, 5, known, open_case), follow_up(5, 5, known, closed_case, reopen=QueueTarget("support")),
              relink]

    outcomes = crm.write_history(writes)

    assert [o.error for o in outcomes] == [None] * 6
    assert composites(em) == {f"POST {API}/composite": 1}  # everything in one API call
    [contact] = [c for c in em.records("Contact") if c["Crmhub_Person__c"] == person_key(1)]
    [lead] = [c for c in em.records("Lead") if c["Crmhub_Person__c"] == person_key(2)]
    new_cases = {c["Crmhub_Conversation__c"]: c for c in em.records("Case") if c["Crmhub_Conversation__c"]}
    first_case = new_cases[writes[0].new_case.key]  # type: ignore[union-attr]
    assert first_case["ContactId"] == contact["Id"] and first_case["Priority"] == "High"
    assert new_cases[writes[1].new_case.key]["ContactId"] is None  # type: ignore[union-attr]  # Leads are not
    assert (task(em, writes[0].key)["WhoId"], task(em, writes[0].key)["WhatId"]) == (contact["Id"], first_case["Id"])
    assert task(em, writes[2].key)["WhatId"] == first_case["Id"]  # the same conversation: one Case
    assert task(em, writes[1].key)["WhoId"] == lead["Id"]
    assert task(em, writes[3].key)["WhatId"] == open_case
    assert em.record(closed_case)["Status"] == "New"  # type: ignore[index]  # reopened
    assert em.record(moved_case)["ContactId"] == known  # type: ignore[index]  # moved to the primary Contact
    assert em.record(moved_task)["WhoId"] == known  # type: ignore[index]
    assert (outcomes[0].contact_id, outcomes[0].case_id) == (contact["Id"], first_case["Id"])
    assert outcomes[1].contact_id == lead["Id"]
    assert outcomes[3].record_id == task(em, writes[3].key)["Id"]


def test_one_refused_contact_fails_only_its_own_writes(crm: SalesforceCrm, em: SalesforceEmulator) -> None:
    known = em.insert("Contact", LastName="Known", Phone="+14155552000")
    case = em.insert("Case", Subject="open", ContactId=known)
    writes = [new_customer(1, 1), new_customer(2, 2), new_customer(3, 2), follow_up(4, 5, known, case)]
    # A validation rule of the customer's refuses the second new Contact (index 1 of the contacts upsert).
    em.faults.add(Fault("partial_failure", reject=[1], path="/composite/sobjects/Contact/"))

    outcomes = crm.write_history(writes)

    assert composites(em) == {f"POST {API}/composite": 1}
    assert outcomes[0].error is None and outcomes[3].error is None
    for refused in outcomes[1:3]:
        assert refused.error is not None and "FIELD_CUSTOM_VALIDATION_EXCEPTION" in str(refused.error)
    assert sorted(t["Crmhub_Key__c"] for t in em.records("Task")) == sorted([writes[0].key, writes[3].key])
    assert [c["Crmhub_Conversation__c"] for c in em.records("Case") if c["Crmhub_Conversation__c"]] == [
        writes[0].new_case.key]  # type: ignore[union-attr]  # no Case without its Contact
    # The next attempt (no fault now) writes them, once.
    again = crm.write_history(writes)
    assert [o.error for o in again] == [None] * 4
    assert sorted(t["Crmhub_Key__c"] for t in em.records("Task")) == sorted(w.key for w in writes)


def test_found_tasks_are_sent_again_without_task_subtype(crm: SalesforceCrm, em: SalesforceEmulator) -> None:
    writes = [new_customer(1, 1), new_customer(2, 2)]
    assert [o.error for o in crm.write_history(writes)] == [None, None]
    em.calls.clear()

    outcomes = crm.write_history(writes)  # as after a lost answer: every Task exists already

    assert [o.error for o in outcomes] == [None, None]
    assert composites(em) == {f"POST {API}/composite": 1,
                              f"PATCH {API}/composite/sobjects/<sobject>/<field>": 1}  # the create-only retry
    assert sorted(t["TaskSubtype"] for t in em.records("Task")) == ["Task", "Task"]
    assert len(em.records("Task")) == len(em.records("Case")) == len(em.records("Contact")) == 2


def test_a_composite_whose_answer_was_lost_lands_every_item_once(crm: SalesforceCrm,
                                                                 em: SalesforceEmulator) -> None:
    known = em.insert("Contact", LastName="Known", Phone="+14155552000")
    closed_case = em.insert("Case", Subject="closed", ContactId=known, Status="Closed")
    writes = [new_customer(1, 1), new_customer(2, 2, lead=True), new_customer(3, 1),
              follow_up(4, 5, known, closed_case, reopen=QueueTarget("support"))]
    lost = em.faults.add(Fault("reset", path="/composite$", after=True, times=1))

    outcomes = crm.write_history(writes)

    assert lost.hits == 1 and [o.error for o in outcomes] == [None] * 4
    assert em.calls[f"POST {API}/composite"] == 2  # the lost one and its resend
    assert sorted(t["Crmhub_Key__c"] for t in em.records("Task")) == sorted(w.key for w in writes)
    assert len(em.records("Contact")) == 2 and len(em.records("Lead")) == 1
    assert len([c for c in em.records("Case") if c["Crmhub_Conversation__c"]]) == 2
    assert {t["TaskSubtype"] for t in em.records("Task")} == {"Task"}
    assert em.record(closed_case)["IsClosed"] is False  # type: ignore[index]
    assert outcomes[0].contact_id == em.records("Contact")[1]["Id"]


def test_a_subrequest_that_fails_as_a_whole_is_sent_again_on_its_own(crm: SalesforceCrm,
                                                                     em: SalesforceEmulator) -> None:
    writes = [new_customer(1, 1), new_customer(2, 2)]
    # The Task upsert inside the Composite answers 500 UNKNOWN_EXCEPTION; the rest of the Composite lands.
    failing = em.faults.add(Fault("server_error", status=500, path="/composite/sobjects/Task/"))

    outcomes = crm.write_history(writes)

    assert failing.hits == 1 and [o.error for o in outcomes] == [None, None]
    assert composites(em) == {f"POST {API}/composite": 1,  # contacts and Cases
                              f"PATCH {API}/composite/sobjects/<sobject>/<field>": 1}  # the Tasks alone
    assert sorted(t["Crmhub_Key__c"] for t in em.records("Task")) == sorted(w.key for w in writes)
    assert {t["WhoId"] for t in em.records("Task")} == {c["Id"] for c in em.records("Contact")}


def test_a_batch_larger_than_a_collection_takes_more_subrequests(crm: SalesforceCrm, em: SalesforceEmulator) -> None:
    writes = [new_customer(n, n) for n in range(1, 231)]

    outcomes = crm.write_history(writes)

    assert [o.error for o in outcomes] == [None] * 230
    # contacts, cases and tasks in two pieces each: 6 collections subrequests, so two Composites
    assert composites(em) == {f"POST {API}/composite": 2}
    assert len(em.records("Task")) == len(em.records("Contact")) == len(em.records("Case")) == 230


# ---- the replies read rides the write Composite --------------------------------------------------------------

def replies_read(crm: SalesforceCrm, cursor: str | None) -> tuple[list[str], str]:
    """The agents' reply texts `reply_pages` hands out from `cursor`, and the cursor it ends at."""
    pages = list(crm.reply_pages(cursor, start=START))
    return [r.text for page in pages for r in page.replies], pages[-1].cursor


def test_the_replies_read_rides_the_next_write_composite(crm: SalesforceCrm, em: SalesforceEmulator) -> None:
    clock = [100.0]
    crm.carried_reads_within, crm.clock = 7.5, lambda: clock[0]
    case = em.insert("Case", Subject="open", Crmhub_Conversation__c="sms:a#1")
    agent = em.add_user("agent@sandbox.crmhub.test", "pw")
    replies, cursor = replies_read(crm, None)  # the first read has no cursor to carry: a query of its own
    assert replies == [] and composites(em) == {f"GET {API}/chatter/users/me": 1, f"GET {API}/query": 1}
    em.calls.clear()
    em.insert("CaseComment", ParentId=case, CommentBody="On its way", IsPublished=True, CreatedById=agent)

    assert [o.error for o in crm.write_history([new_customer(1, 1)])] == [None]
    clock[0] += 7.5
    replies, cursor = replies_read(crm, cursor)

    assert replies == ["On its way"]
    assert composites(em) == {f"POST {API}/composite": 1}  # the read cost no call of its own
    assert crm.write_history([new_customer(2, 2)])[0].error is None
    clock[0] += 7.6  # older than carried_reads_within: read again
    em.calls.clear()
    replies, _ = replies_read(crm, cursor)
    assert replies == ["On its way"] and composites(em) == {f"GET {API}/query": 1}  # >= cursor: read again, as before


def test_a_carried_read_from_another_cursor_is_not_taken(crm: SalesforceCrm, em: SalesforceEmulator) -> None:
    crm.carried_reads_within = 60.0
    case = em.insert("Case", Subject="open", Crmhub_Conversation__c="sms:a#1")
    _, cursor = replies_read(crm, None)
    crm.write_history([new_customer(1, 1)])
    em.insert("CaseComment", ParentId=case, CommentBody="Later", IsPublished=True,
              CreatedById=em.add_user("agent@sandbox.crmhub.test", "pw"))
    em.calls.clear()

    replies, _ = replies_read(crm, "2020-01-01T00:00:00Z")  # another daemon's cursor, say

    assert replies == ["Later"] and composites(em) == {f"GET {API}/query": 1}


def test_a_ride_takes_a_place_left_in_the_last_composite_and_never_one_of_its_own() -> None:
    def subs(n: int) -> list[Subrequest]:
        return [Subrequest(f"s{i}", "PATCH", "composite/sobjects", [{"Id": str(i)}]) for i in range(n)]

    ride = Ride("replies", "SELECT Id FROM CaseComment WHERE IsPublished = true")
    [(_, room)] = composite_bodies("59.0", subs(4), ride)
    assert room["compositeRequest"][-1] == {
        "method": "GET", "referenceId": "replies",
        "url": "/services/data/v59.0/query?q=SELECT%20Id%20FROM%20CaseComment%20WHERE%20IsPublished%20%3D%20true"}
    [(_, full)] = composite_bodies("59.0", subs(5), ride)  # five collections: no place for a query
    assert [r["referenceId"] for r in full["compositeRequest"]] == ["s0", "s1", "s2", "s3", "s4"]
    assert composite_bodies("59.0", [], ride) == []  # nothing to write: no Composite for the read alone
