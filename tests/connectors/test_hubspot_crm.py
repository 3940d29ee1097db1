"""The HubSpot connector against the emulator, through hubspot-api-client.

Assertions look at what the emulated HubSpot holds (records, properties,
associations, calls counted as HubSpot bills them), not at what the
connector says it did. Waits go through a recording `sleep` that moves the
sandbox clock, so rate-limit windows pass without real time passing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmhub.connectors._retry import Retrier, RetryPolicy
from crmhub.connectors.hubspot import ACTIVITY_TYPES, HubSpotCrm, TicketQueue
from crmhub.connectors.salesforce import ContactObject
from crmhub.errors import AuthError, CaseGone, Rejected
from crmhub.model import (
    CallInfo, CaseSpec, Channel, Direction, HistoryWrite, Identity, IdentityKind, Interaction, QueueTarget,
)
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.hubspot import HubSpotEmulator
from crmhub.sandbox.hubspot.catalog import object_type

OURS = "+14155550100"
SUPPORT = Identity(IdentityKind.EMAIL, "support@acme.test", display="Acme Support")
JANE = Identity(IdentityKind.EMAIL, "jane@customers.test", display="Jane Doe")
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CONTACTS = ContactObject("contacts", {"phone": ["phone", "mobilephone"], "email": ["email"],
                                      "x_handle": ["twitterhandle"]}, extra_fields=("lifecyclestage",))


@pytest.fixture
def hub(hubspot_sandbox: EmulatorServer) -> HubSpotEmulator:
    emulator: HubSpotEmulator = hubspot_sandbox.emulator  # type: ignore[assignment]  # the hubspot fixture's
    return emulator


@pytest.fixture
def owner(hub: HubSpotEmulator) -> str:
    return hub.add_owner("ada@example.com", "Ada", "Agent")


def connector(server: EmulatorServer, waits: list[float] | None = None, *, token: str = "sandbox-token",
              queues: dict[str, TicketQueue] | None = None, landed: Callable[[], bool] | None = None,
              **kwargs: Any) -> HubSpotCrm:
    """The connector as app.py builds it; `waits` records every backoff, which moves sandbox time.

    `landed`: each backoff also waits (at most 30 s) until it holds, e.g. until a slow request the client gave
    up on has landed in the emulator: the retry then comes after it, from what the emulator holds, not a delay.
    """
    recorded = waits if waits is not None else []

    def sleep(seconds: float) -> None:
        recorded.append(seconds)
        server.emulator.clock.advance(seconds)
        deadline = time.monotonic() + 30
        while landed is not None and not landed():
            assert time.monotonic() < deadline, "the slow request never landed"
            time.sleep(0.01)  # polling the emulator's state, not a delay standing in for it

    retrier = Retrier(RetryPolicy(max_attempts=4), sleep=sleep, rng=random.Random(1))
    return HubSpotCrm(access_token=token, base_url=server.url, objects=[CONTACTS],
                      queues=queues if queues is not None else {"support": TicketQueue("0", "1")},
                      retrier=retrier, **kwargs)


def interaction(n: int, channel: Channel = Channel.SMS, customer: str = "+14155550123",
                direction: Direction = Direction.INBOUND, **kwargs: Any) -> Interaction:
    them = (Identity(IdentityKind.X, "123456", display="jane_doe") if channel in (Channel.X_DM, Channel.X_MENTION)
            else Identity(IdentityKind.PHONE, customer))
    us = Identity(IdentityKind.PHONE, OURS)
    sender, recipient = (them, us) if direction is Direction.INBOUND else (us, them)
    return Interaction(channel=channel, direction=direction, external_id=f"SM{n:032d}",
                       conversation_key=f"{channel}:{OURS}:{them.value}", sender=sender, recipient=recipient,
                       text=f"message {n}", occurred_at=START + timedelta(minutes=n), **kwargs)


def mail(n: int, direction: Direction = Direction.INBOUND, **kwargs: Any) -> Interaction:
    """Message n of Jane's email thread with our support address (outbound: the agent's reply)."""
    sender, recipient = (JANE, SUPPORT) if direction is Direction.INBOUND else (SUPPORT, JANE)
    return Interaction(channel=Channel.EMAIL, direction=direction, external_id=f"m{n}@customers.test",
                       conversation_key="email:m1@customers.test", sender=sender, recipient=recipient,
                       text=f"Parcel\n\nmessage {n}", occurred_at=START + timedelta(minutes=n), **kwargs)


def write(item: Interaction, person_id: int = 1, *, contact_id: str | None = None, case_id: str | None = None,
          queue: str = "support", new_contact: tuple[Identity, ...] | None = None) -> HistoryWrite:
    new_case = None if case_id else CaseSpec(key=f"{item.conversation_key}#1", target=QueueTarget(queue, "high"),
                                             fields={"subject": f"{item.channel.label} conversation"})
    if new_contact is None:
        new_contact = () if contact_id else (item.customer,)
    return HistoryWrite(key=item.key, person_id=person_id, interaction=item, fields={}, contact_object="contacts",
                        contact_id=contact_id, new_contact=new_contact, case_id=case_id, new_case=new_case)


def holdings(hub: HubSpotEmulator) -> dict[str, int]:
    """How many records of each type, and associations, the emulated HubSpot holds."""
    counts = {t: len(hub.objects(t)) for t in ("contacts", "tickets", *ACTIVITY_TYPES)}
    counts["links"] = sum(len(hub.associated(t, r["id"], "contacts")) + len(hub.associated(t, r["id"], "tickets"))
                          for t in ACTIVITY_TYPES for r in hub.objects(t))
    return counts


def calls_to(hub: HubSpotEmulator, fragment: str) -> int:
    return sum(n for endpoint, n in hub.calls.items() if fragment in endpoint)


# ---- mirror ----------------------------------------------------------------------
def test_mirror_full_load_normalises_messy_phones_and_handles(hub: HubSpotEmulator,
                                                             hubspot_sandbox: EmulatorServer) -> None:
    hub.add("contacts", phone="(415) 555-0123", email="Jane@Example.COM", lifecyclestage="customer")
    hub.add("contacts", mobilephone="+1 415.555.0124", twitterhandle="@Bob_Lee")
    hub.add("contacts", phone="011 44 20 7946 0958")  # another country's, dialled from the US
    hub.add("contacts", phone="not a number", firstname="Nobody")
    pages = list(connector(hubspot_sandbox, page_size=2).mirror_pages("contacts", None))
    assert [len(records) for records, _ in pages] == [2, 2]
    records = [r for page, _ in pages for r in page]
    jane, bob, uk, nobody = records
    assert {(i.kind, i.value) for i in jane.identities} == {(IdentityKind.PHONE, "+14155550123"),
                                                          (IdentityKind.EMAIL, "jane@example.com")}
    assert jane.fields == {"lifecyclestage": "customer"} and jane.object_type == "contacts"
    assert {(i.kind, i.value) for i in bob.identities} == {(IdentityKind.PHONE, "+14155550124"),
                                                         (IdentityKind.X_HANDLE, "bob_lee")}
    assert [i.value for i in uk.identities] == ["+442079460958"]
    assert nobody.identities == ()
    assert pages[-1][1] == max(r.modified_at for r in records).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def test_incremental_refresh_returns_only_changed_records(hub: HubSpotEmulator,
                                                          hubspot_sandbox: EmulatorServer) -> None:
    ids = []
    for i in range(5):
        ids.append(hub.add("contacts", phone=f"+1415555010{i}"))
        hub.clock.advance(1)
    crm = connector(hubspot_sandbox)
    (first, cursor), = list(crm.mirror_pages("contacts", None))
    assert [r.record_id for r in first] == ids
    with hub.lock:
        hub.backend.update(object_type("contacts"), ids[1], {"phone": "(415) 555-0199"})
    hub.clock.advance(1)
    added = hub.add("contacts", email="new@example.com")
    pages = list(crm.mirror_pages("contacts", cursor))
    changed = [r.record_id for page, _ in pages for r in page]
    # The cursor is inclusive (GTE): the record on the cursor's millisecond (the last
    # one of the first load) comes back once more, so a record stamped in the same
    # millisecond as the cursor is never skipped. The unchanged others stay out.
    assert changed == [ids[4], ids[1], added]
    assert [i.value for i in next(r for p, _ in pages for r in p if r.record_id == ids[1]).identities] == [
        "+14155550199"]
    assert pages[-1][1] > cursor


def test_mirror_restarts_the_search_at_the_result_cap(hub: HubSpotEmulator, hubspot_sandbox: EmulatorServer) -> None:
    hub.set_limits(search_per_second=100)
    ids = []
    for i in range(9):
        ids.append(hub.add("contacts", phone=f"+1415555020{i}"))
        hub.clock.advance(1)
    crm = connector(hubspot_sandbox, page_size=2)
    crm.search_cap = 4  # HubSpot's is 10,000; a small one exercises the restart
    pages = list(crm.mirror_pages("contacts", None))
    seen = [r.record_id for page, _ in pages for r in page]
    assert set(seen) == set(ids)
    assert seen[:4] == ids[:4]  # then it starts again from the 4th record's lastmodifieddate (inclusive)
    cursors = [c for _, c in pages]
    assert cursors == sorted(cursors)


# ---- writes ----------------------------------------------------------------------
def test_new_contact_new_ticket_then_a_follow_up_on_that_ticket(hub: HubSpotEmulator, owner: str,
                                                                hubspot_sandbox: EmulatorServer) -> None:
    crm = connector(hubspot_sandbox, queues={"support": TicketQueue("0", "1", owner)})
    first = write(interaction(1))
    call = write(replace(interaction(2, Channel.CALL, call=CallInfo(95, "completed", "https://rec.test/1.mp3")),
                         conversation_key=first.interaction.conversation_key))  # the same conversation
    [one, two] = crm.write_history([first, call])
    assert one.ok and two.ok, (one.error, two.error)
    assert one.contact_id == two.contact_id and one.case_id == two.case_id
    [contact] = hub.objects("contacts")
    assert contact["id"] == one.contact_id and contact["properties"]["phone"] == "+14155550123"
    [ticket] = hub.objects("tickets")
    assert ticket["id"] == one.case_id
    assert {k: ticket["properties"].get(k) for k in ("crmhub_conversation", "hs_pipeline", "hs_pipeline_stage",
                                                     "hubspot_owner_id", "hs_ticket_priority", "subject")} == {
        "crmhub_conversation": f"{first.interaction.conversation_key}#1", "hs_pipeline": "0", "hs_pipeline_stage": "1",
        "hubspot_owner_id": owner, "hs_ticket_priority": "HIGH", "subject": "SMS conversation"}
    assert list(hub.associated("tickets", ticket["id"], "contacts")) == [contact["id"]]
    [sms] = hub.objects("communications")
    assert sms["id"] == one.record_id
    assert {k: sms["properties"].get(k) for k in ("crmhub_key", "hs_communication_channel_type",
                                                  "hs_communication_body", "hs_timestamp")} == {
        "crmhub_key": first.key, "hs_communication_channel_type": "SMS", "hs_communication_body": "message 1",
        "hs_timestamp": "2026-01-05T09:01:00.000Z"}
    [logged] = hub.objects("calls")
    assert {k: logged["properties"].get(k) for k in ("crmhub_key", "hs_call_direction", "hs_call_duration",
                                                     "hs_call_status", "hs_call_recording_url")} == {
        "crmhub_key": call.key, "hs_call_direction": "INBOUND", "hs_call_duration": "95000",
        "hs_call_status": "COMPLETED", "hs_call_recording_url": "https://rec.test/1.mp3"}
    for kind, record in (("communications", sms), ("calls", logged)):
        assert list(hub.associated(kind, record["id"], "contacts")) == [contact["id"]]
        assert list(hub.associated(kind, record["id"], "tickets")) == [ticket["id"]]

    # The engine now knows the contact and the ticket: a follow-up threads into it.
    follow = write(interaction(3, Channel.WHATSAPP), contact_id=one.contact_id, case_id=one.case_id)
    dm = write(interaction(4, Channel.X_DM), contact_id=one.contact_id, case_id=one.case_id)
    outcomes = crm.write_history([follow, dm])
    assert all(o.ok for o in outcomes) and [o.case_id for o in outcomes] == [ticket["id"]] * 2
    assert len(hub.objects("tickets")) == 1 and len(hub.objects("contacts")) == 1
    whatsapp = next(c for c in hub.objects("communications") if c["properties"]["crmhub_key"] == follow.key)
    assert whatsapp["properties"]["hs_communication_channel_type"] == "WHATS_APP"
    [note] = hub.objects("notes")  # X has no communication channel type in HubSpot: a note
    assert note["properties"]["hs_note_body"] == "X DM inbound from jane_doe: message 4"
    assert set(hub.associated("tickets", ticket["id"], "communications")) == {sms["id"], whatsapp["id"]}
    assert list(hub.associated("notes", note["id"], "contacts")) == [contact["id"]]


def test_writing_the_same_batch_twice_creates_nothing_new(hub: HubSpotEmulator,
                                                          hubspot_sandbox: EmulatorServer) -> None:
    existing = hub.add("contacts", phone="+14155550124")
    writes = [write(interaction(1)), write(interaction(2)),  # one new person, two messages, one ticket
              write(interaction(3, customer="+14155550124"), 2, contact_id=existing),
              write(interaction(4, Channel.CALL, customer="+14155550125", call=CallInfo(5, "no-answer")), 3),
              write(interaction(5, Channel.X_MENTION), 4)]
    crm = connector(hubspot_sandbox)
    first = crm.write_history(writes)
    assert all(o.ok for o in first), [o.error for o in first]
    held = holdings(hub)
    assert held == {"contacts": 4, "tickets": 4, "communications": 3, "calls": 1, "notes": 1, "emails": 0,
                    "links": 10}
    # As after a timeout: the same writes again, by a fresh connector (a restarted daemon).
    again = connector(hubspot_sandbox).write_history(writes)
    assert holdings(hub) == held
    assert [(o.record_id, o.contact_id, o.case_id) for o in again] == [
        (o.record_id, o.contact_id, o.case_id) for o in first]


def test_an_uncertain_contact_create_is_found_again_not_doubled(hub: HubSpotEmulator,
                                                                hubspot_sandbox: EmulatorServer) -> None:
    """The create answers after the client gave up; the retry searches first and finds it."""
    hub.faults.add(Fault("slow", path="contacts/batch/create", delay=0.8))
    waits: list[float] = []
    crm = connector(hubspot_sandbox, waits, timeout=0.3,
                    landed=lambda: bool(hub.objects("contacts")))  # the slow create lands before the retry
    [outcome] = crm.write_history([write(interaction(1))])
    assert outcome.ok and len(waits) == 1
    assert [c["id"] for c in hub.objects("contacts")] == [outcome.contact_id]


def test_a_contact_crash_left_behind_is_found_by_crmhub_person(hub: HubSpotEmulator,
                                                                hubspot_sandbox: EmulatorServer) -> None:
    """The daemon died after HubSpot created the contact: the next attempt reads it by its key, never a second."""
    crm = connector(hubspot_sandbox)
    [first] = crm.write_history([replace(write(interaction(1)), first_attempt=True)])
    hub.calls.clear()
    again = write(interaction(1))  # the same write, no longer a first attempt (its outcome was never saved)
    [outcome] = connector(hubspot_sandbox).write_history([again])
    assert outcome.ok and outcome.contact_id == first.contact_id
    [contact] = hub.objects("contacts")
    assert contact["properties"]["crmhub_person"] == "crmhub-person-1"
    assert calls_to(hub, "contacts/search") == 0 and calls_to(hub, "contacts/batch/create") == 0


def test_a_new_persons_email_held_by_another_contact_links_that_contact(hub: HubSpotEmulator,
                                                                          hubspot_sandbox: EmulatorServer) -> None:
    """HubSpot emails are unique: the create is a 409 CONFLICT, and the contact holding the email is used."""
    agent_made = hub.add("contacts", email="jane@example.com")  # created after crmhub's last mirror refresh
    jane = Identity(IdentityKind.EMAIL, "jane@example.com")
    [outcome] = connector(hubspot_sandbox).write_history(
        [replace(write(interaction(1), new_contact=(jane,)), first_attempt=True)])
    assert outcome.ok and outcome.contact_id == agent_made
    assert [c["id"] for c in hub.objects("contacts")] == [agent_made]
    [sms] = hub.objects("communications")
    assert list(hub.associated("communications", sms["id"], "contacts")) == [agent_made]


def test_a_partial_batch_failure_fails_only_that_write(hub: HubSpotEmulator, hubspot_sandbox: EmulatorServer) -> None:
    contact = hub.add("contacts", phone="+14155550123")
    ticket = hub.add("tickets", subject="open")
    writes = [write(interaction(i), contact_id=contact, case_id=ticket) for i in range(3)]
    hub.faults.add(Fault("partial_failure", path="communications/batch/create", reject=[1]))
    outcomes = connector(hubspot_sandbox).write_history(writes)
    assert [o.ok for o in outcomes] == [True, False, True]
    assert isinstance(outcomes[1].error, Rejected)
    assert sorted(c["properties"]["crmhub_key"] for c in hub.objects("communications")) == [
        writes[0].key, writes[2].key]
    # The engine retries the failed one later: it lands, nothing else moves.
    [retried] = connector(hubspot_sandbox).write_history([writes[1]])
    assert retried.ok and len(hub.objects("communications")) == 3


def test_an_activity_whose_ticket_is_gone_fails_alone_as_case_gone(hub: HubSpotEmulator, hubspot_sandbox: EmulatorServer) -> None:
    """The inline association names a ticket HubSpot no longer has: that input fails as `CaseGone` (the engine opens
    the next ticket), the others land linked."""
    contact = hub.add("contacts", phone="+14155550123")
    ticket = hub.add("tickets", subject="open")
    writes = [write(interaction(i), contact_id=contact, case_id=ticket) for i in range(3)]
    writes[2] = replace(writes[2], case_id="987654")
    outcomes = connector(hubspot_sandbox).write_history(writes)
    assert [o.ok for o in outcomes] == [True, True, False]
    assert isinstance(outcomes[2].error, CaseGone) and "987654 does not exist" in str(outcomes[2].error)
    assert sorted(hub.associated("tickets", ticket, "communications")) == sorted(o.record_id for o in outcomes[:2])
    assert all(list(hub.associated("communications", o.record_id, "contacts")) == [contact] for o in outcomes[:2])


def test_a_record_found_by_its_key_gets_the_associations_it_lacks(hub: HubSpotEmulator,
                                                                   hubspot_sandbox: EmulatorServer) -> None:
    """An earlier attempt left the communication without its links: found by key, linked, not created again."""
    contact = hub.add("contacts", phone="+14155550123")
    ticket = hub.add("tickets", subject="open")
    retried = write(interaction(1), contact_id=contact, case_id=ticket)  # not a first attempt: looked for first
    crm = connector(hubspot_sandbox)
    crm.ensure_key_property("communications", "crmhub_key")
    earlier = hub.add("communications", crmhub_key=retried.key, hs_communication_body="message 1",
                      hs_communication_channel_type="SMS")
    hub.calls.clear()
    [outcome] = crm.write_history([retried])
    assert outcome.ok and outcome.record_id == earlier
    assert [c["id"] for c in hub.objects("communications")] == [earlier]
    assert list(hub.associated("communications", earlier, "contacts")) == [contact]
    assert list(hub.associated("communications", earlier, "tickets")) == [ticket]
    assert calls_to(hub, "batch/read") == 1 and calls_to(hub, "batch/create") == 0
    assert calls_to(hub, "associate/default") == 2  # one v4 batch per target type


def test_a_first_attempt_whose_key_is_taken_is_found_and_linked(hub: HubSpotEmulator,
                                                                hubspot_sandbox: EmulatorServer) -> None:
    """A create refused with 409 CONFLICT (the key exists) reads the record by its key instead of failing."""
    contact = hub.add("contacts", phone="+14155550123")
    ticket = hub.add("tickets", subject="open")
    writes = [replace(write(interaction(i), contact_id=contact, case_id=ticket), first_attempt=True) for i in range(2)]
    crm = connector(hubspot_sandbox)
    crm.ensure_key_property("communications", "crmhub_key")
    earlier = hub.add("communications", crmhub_key=writes[0].key, hs_communication_body="message 0",
                      hs_communication_channel_type="SMS")
    outcomes = crm.write_history(writes)
    assert all(o.ok for o in outcomes) and outcomes[0].record_id == earlier
    assert len(hub.objects("communications")) == 2
    assert sorted(hub.associated("tickets", ticket, "communications")) == sorted(o.record_id for o in outcomes)
    assert list(hub.associated("communications", earlier, "contacts")) == [contact]


@pytest.mark.parametrize("path", ["contacts/batch/create", "tickets/batch/create", "communications/batch/create",
                                  "calls/batch/create", "emails/batch/create"])
def test_a_create_whose_answer_is_lost_is_found_again_not_doubled(hub: HubSpotEmulator,
                                                                  hubspot_sandbox: EmulatorServer, path: str) -> None:
    """The create lands and its answer is lost: the retry finds it by crmhub's key, links it, writes nothing twice."""
    hub.faults.add(Fault("reset", path=path, after=True, times=1))
    sms = write(interaction(1))
    call = write(replace(interaction(2, Channel.CALL, call=CallInfo(5, "completed")),
                         conversation_key=sms.interaction.conversation_key))
    email = write(replace(mail(3), conversation_key=sms.interaction.conversation_key))
    waits: list[float] = []
    outcomes = connector(hubspot_sandbox, waits).write_history([replace(w, first_attempt=True)
                                                                for w in (sms, call, email)])
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert len(waits) == 1 and [f["hits"] for f in hub.faults.list()] == [1]
    assert holdings(hub) == {"contacts": 1, "tickets": 1, "communications": 1, "calls": 1, "notes": 0, "emails": 1,
                             "links": 6}
    [contact], [ticket] = hub.objects("contacts"), hub.objects("tickets")
    assert list(hub.associated("tickets", ticket["id"], "contacts")) == [contact["id"]]
    assert {o.case_id for o in outcomes} == {ticket["id"]} and {o.contact_id for o in outcomes} == {contact["id"]}


def test_a_429_is_waited_out(hub: HubSpotEmulator, hubspot_sandbox: EmulatorServer) -> None:
    hub.faults.add(Fault("rate_limit", path="batch/create", retry_after=7, times=1))
    waits: list[float] = []
    outcomes = connector(hubspot_sandbox, waits).write_history([write(interaction(1))])
    assert outcomes[0].ok
    assert len(waits) == 1 and waits[0] >= 7


def test_a_429_without_retry_after_waits_out_hubspots_window(hub: HubSpotEmulator,
                                                             hubspot_sandbox: EmulatorServer) -> None:
    """HubSpot's own 429s carry no Retry-After (or 0): the ten-second window is the hint."""
    hub.faults.add(Fault("rate_limit", path="/search", retry_after=0, times=2))
    waits: list[float] = []
    hub.add("contacts", phone="+14155550123")
    records = [r for page, _ in connector(hubspot_sandbox, waits).mirror_pages("contacts", None) for r in page]
    assert len(records) == 1
    assert len(waits) == 2 and all(w >= 10 for w in waits)


def test_unknown_queue_is_rejected_with_the_fix_and_the_rest_goes_on(hub: HubSpotEmulator,
                                                                     hubspot_sandbox: EmulatorServer) -> None:
    crm = connector(hubspot_sandbox, queues={"support": TicketQueue("0", "1"), "vip": TicketQueue("0", "9")})
    lost = write(interaction(1), 1, queue="escalations")
    bad_stage = write(interaction(2, customer="+14155550124"), 2, queue="vip")
    fine = write(interaction(3, customer="+14155550125"), 3)
    outcomes = crm.write_history([lost, bad_stage, fine])
    assert [o.ok for o in outcomes] == [False, False, True]
    assert isinstance(outcomes[0].error, Rejected)
    assert "queue 'escalations' is not declared for HubSpot" in str(outcomes[0].error)
    assert "queues.hubspot in mappings/routing.yaml" in str(outcomes[0].error)
    assert "stage '9' is not in pipeline 0" in str(outcomes[1].error)
    assert "fix queues.hubspot.vip in mappings/routing.yaml" in str(outcomes[1].error)
    assert len(hub.objects("tickets")) == 1 and len(hub.objects("communications")) == 1


def test_wrong_token_is_an_auth_error_at_once(hub: HubSpotEmulator, hubspot_sandbox: EmulatorServer) -> None:
    waits: list[float] = []
    with pytest.raises(AuthError, match="HTTP 401 INVALID_AUTHENTICATION.*crms.hubspot.auth.access_token"):
        list(connector(hubspot_sandbox, waits, token="wrong").mirror_pages("contacts", None))
    assert waits == []


def test_server_errors_and_resets_are_retried(hub: HubSpotEmulator, hubspot_sandbox: EmulatorServer) -> None:
    hub.faults.add(Fault("server_error", path="tickets/batch/create", status=502, times=1))
    hub.faults.add(Fault("reset", path="communications/batch/create", times=1))
    waits: list[float] = []
    [outcome] = connector(hubspot_sandbox, waits).write_history([write(interaction(1))])
    assert outcome.ok and len(waits) == 2
    assert holdings(hub)["communications"] == 1 and holdings(hub)["tickets"] == 1


def test_api_calls_for_a_batch_of_20_writes(hub: HubSpotEmulator, hubspot_sandbox: EmulatorServer) -> None:
    """20 messages from 10 new people, 10 new tickets, one batch, all first attempts.

    Upper bound, in calls as HubSpot bills them:
      once per connector: GET pipelines, and GET + POST (missing in a fresh
        account) of the properties crmhub_person, crmhub_conversation and
        crmhub_key                                                          = 7
      per batch: contacts batch create 1 (keyed by crmhub_person), tickets
        batch create 1 (contact association inline), communications batch
        create 1 (contact and ticket associations inline)                   = 3
    10 calls for 20 interactions (0.5 per interaction); a second batch of the
    same shape costs 3 (0.15 each), and at 100 writes per batch 0.03 each.
    """
    writes = [replace(write(interaction(2 * p + m, customer=f"+1415555{p:04d}"), p), first_attempt=True)
              for p in range(10) for m in range(2)]
    crm = connector(hubspot_sandbox)
    outcomes = crm.write_history(writes)
    assert all(o.ok for o in outcomes)
    assert hub.total_calls <= 10, dict(hub.calls)
    assert calls_to(hub, "search") == 0 and calls_to(hub, "batch/create") == 3
    assert calls_to(hub, "/crm/v4/") == 0, dict(hub.calls)  # no association call
    assert holdings(hub)["links"] == 40
    hub.calls.clear()
    more = [replace(write(interaction(100 + 2 * p + m, customer=f"+1415556{p:04d}"), 100 + p), first_attempt=True)
            for p in range(10) for m in range(2)]
    assert all(o.ok for o in crm.write_history(more))
    assert hub.total_calls <= 3, dict(hub.calls)


def test_an_email_and_the_agents_reply_are_email_engagements_on_the_contact_and_ticket(
        hub: HubSpotEmulator, hubspot_sandbox: EmulatorServer) -> None:
    """Email is HubSpot's email engagement: INCOMING_EMAIL in, EMAIL (sent) out, with the addresses in its headers."""
    crm = connector(hubspot_sandbox)
    [first] = crm.write_history([write(mail(1), new_contact=(JANE,))])
    assert first.ok, first.error
    [reply] = crm.write_history([write(mail(2, Direction.OUTBOUND), contact_id=first.contact_id,
                                       case_id=first.case_id)])
    assert reply.ok, reply.error
    assert holdings(hub) == {"contacts": 1, "tickets": 1, "communications": 0, "calls": 0, "notes": 0, "emails": 2,
                             "links": 4}
    shown = ("crmhub_key", "hs_email_direction", "hs_email_status", "hs_email_subject", "hs_email_text",
             "hs_timestamp", "hs_email_from_email", "hs_email_from_firstname", "hs_email_from_lastname",
             "hs_email_to_email", "hs_email_to_firstname")
    inbound, outbound = sorted(hub.objects("emails"), key=lambda e: e["properties"]["hs_timestamp"])
    assert {k: inbound["properties"].get(k) for k in shown} == {
        "crmhub_key": "email:m1@customers.test", "hs_email_direction": "INCOMING_EMAIL", "hs_email_status": "SENT",
        "hs_email_subject": "Email from Jane Doe", "hs_email_text": "Parcel\n\nmessage 1",
        "hs_timestamp": "2026-01-05T09:01:00.000Z", "hs_email_from_email": "jane@customers.test",
        "hs_email_from_firstname": "Jane", "hs_email_from_lastname": "Doe", "hs_email_to_email": "support@acme.test",
        "hs_email_to_firstname": "Acme"}
    assert {k: outbound["properties"].get(k) for k in shown[:4]} == {
        "crmhub_key": "email:m2@customers.test", "hs_email_direction": "EMAIL", "hs_email_status": "SENT",
        "hs_email_subject": "Email to Jane Doe"}
    assert outbound["properties"]["hs_email_to_email"] == "jane@customers.test"
    [contact], [ticket] = hub.objects("contacts"), hub.objects("tickets")
    for email in (inbound, outbound):
        assert hub.associated("emails", email["id"], "contacts") == {contact["id"]: [198]}
        assert hub.associated("emails", email["id"], "tickets") == {ticket["id"]: [224]}


def test_an_undone_join_moves_an_email_and_its_ticket_off_the_wrong_contact(
        hub: HubSpotEmulator, hubspot_sandbox: EmulatorServer) -> None:
    """A relink finds the email by its key, links it to the right contact, and archives the wrong association."""
    wrong, right = hub.add("contacts", email="other@customers.test"), hub.add("contacts", email=JANE.value)
    crm = connector(hubspot_sandbox)
    [first] = crm.write_history([write(mail(1), contact_id=wrong)])
    assert first.ok, first.error
    [moved] = crm.write_history([replace(write(mail(1), contact_id=right, case_id=first.case_id), relink=True,
                                         detach_from=wrong)])
    assert moved.ok and moved.record_id == first.record_id, moved.error
    [email] = hub.objects("emails")
    assert hub.associated("emails", email["id"], "contacts") == {right: [198]}
    assert list(hub.associated("tickets", str(first.case_id), "contacts")) == [right]


@pytest.mark.parametrize(("channel", "kind", "label"), [(Channel.MESSENGER, IdentityKind.MESSENGER, "Messenger"),
                                                        (Channel.INSTAGRAM, IdentityKind.INSTAGRAM, "Instagram")])
def test_a_channel_hubspot_has_no_engagement_type_for_is_a_note_with_its_label(
        hub: HubSpotEmulator, hubspot_sandbox: EmulatorServer, channel: Channel, kind: IdentityKind,
        label: str) -> None:
    """HubSpot logs SMS, WhatsApp (communications), calls and emails: other channels log a note."""
    crm = connector(hubspot_sandbox)
    them = Identity(kind, "6543210987654321")
    item = replace(interaction(7), channel=channel, sender=them, conversation_key=f"{channel}:{them.value}")
    [outcome] = crm.write_history([write(item, new_contact=())])
    assert outcome.ok, outcome.error
    [note] = hub.objects("notes")
    assert note["properties"]["hs_note_body"] == f"{label} inbound from {them.value}: message 7"
    assert hub.objects("communications") == []
    [ticket] = hub.objects("tickets")
    assert ticket["properties"]["subject"] == f"{label} conversation"
