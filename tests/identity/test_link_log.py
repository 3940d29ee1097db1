"""The link log: each join is an event with its evidence, its actor and exactly the rows it moved.

On both stores, a confirmed claim's join and its undo are read back from the
log; through the hub, a CRM record holding two customers' numbers joins them
as `crm_field` evidence by the daemon, shown by `crmhub links list` and `show`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from crmhub.identities import email, phone
from crmhub.model import Channel, Direction, Identity, IdentityKind, Interaction, MirrorRecord
from crmhub.store import StateStore, graph, ledger, linklog
from crmhub.store.linklog import Evidence
from crmhub.store.schema import LedgerRow, LinkEventRow, PersonRow
from crmhub.sync.identity import IdentityGraph, IdentityPolicy, OnStatement, StatementPolicy
from crmhub.sync.split import UndoRefused, undo_join
from tests.identity.test_undo import CUSTOMER, STRANGER, Org, org  # noqa: F401  # the fixture

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
OURS = phone("+14155550100")
ALICE, BOB = phone("+14155550101"), phone("+14155550102")


def _sms(sid: str, *, sender: str) -> Interaction:
    who = phone(sender)
    return Interaction(Channel.SMS, Direction.INBOUND, sid, f"sms:{OURS.value}:{who.value}", who, OURS, "hi", NOW)


def _route(store: StateStore, sids: dict[str, str]) -> dict[str, int]:
    """Store the messages (sid -> sender) and give each ledger row its sender's person, as routing would."""
    with store.transaction() as s:
        ledger.ingest_page(s, [_sms(sid, sender=sender) for sid, sender in sids.items()], now=NOW)
        persons = {}
        for sid, sender in sids.items():
            person = graph.person_for(s, phone(sender), now=NOW)
            s.execute(update(LedgerRow).where(LedgerRow.external_id == sid).values(person_id=person))
            persons[sid] = person
        return persons


def _persons(store: StateStore) -> dict[str, int]:
    with store.transaction() as s:
        return {sid: person for sid, person in s.execute(select(LedgerRow.external_id, LedgerRow.person_id))}


def test_a_join_logs_what_it_moved_and_its_undo_gives_exactly_that_back(store: StateStore) -> None:
    alice = _route(store, {"SM1": ALICE.value})["SM1"]
    bob = _route(store, {"SM2": BOB.value, "SM3": BOB.value})["SM2"]
    with store.transaction() as s:
        graph.add_link(s, bob, "salesforce", "Contact", "003BOB", now=NOW)
        person = IdentityGraph(s, [], IdentityPolicy(), NOW).confirm(ALICE, BOB, by="agent jane (salesforce)",
                                                                     evidence=Evidence.AGENT)
    assert person == alice
    with store.transaction() as s:
        [event] = s.scalars(select(LinkEventRow)).all()
        assert (event.action, event.kept_person_id, event.absorbed_person_id, event.evidence, event.actor,
                event.concerning) == ("join", alice, bob, "agent", "agent jane (salesforce)", f"phone:{BOB.value}")
        assert linklog.moved_counts(s, event.id) == {"identities": 1, "crm_links": 1, "ledger": 2}
        event_id = event.id
    _route(store, {"SM4": BOB.value})  # Bob writes after the join: his message goes to the joined person
    assert _persons(store)["SM4"] == alice

    with store.transaction() as s:
        split = undo_join(s, event_id, crms=["salesforce"], by="ops", now=NOW)
    assert split.moved == {"identities": 1, "crm_links": 1, "ledger": 3}
    assert _persons(store) == {"SM1": alice, "SM2": bob, "SM3": bob, "SM4": bob}
    with store.transaction() as s:
        assert graph.holder_of(s, BOB) == bob and graph.holder_of(s, ALICE) == alice
        assert [link.record_id for link in graph.links_of(s, bob, "salesforce")] == ["003BOB"]
        assert s.get(PersonRow, bob).merged_into is None
        logged = linklog.get(s, split.split)
        assert (logged.action, logged.undoes, logged.actor, logged.evidence) == ("split", event_id, "ops", "admin")
        assert linklog.moved_counts(s, split.split) == {"identities": 1, "crm_links": 1, "ledger": 3}
        with pytest.raises(UndoRefused, match="is a split: only a join can be undone"):
            undo_join(s, split.split, crms=[], by="ops", now=NOW)


def test_a_confirmed_claim_of_an_identity_nobody_held_is_logged_and_can_be_undone(store: StateStore) -> None:
    alice = _route(store, {"SM1": ALICE.value})["SM1"]
    with store.transaction() as s:
        assert graph.holder_of(s, BOB) is None  # nobody has written from it or holds it in a CRM
        person = IdentityGraph(s, [], IdentityPolicy(), NOW).confirm(ALICE, BOB, by="zendesk user 7",
                                                                     evidence=Evidence.AGENT)
    assert person == alice
    with store.transaction() as s:
        [event] = s.scalars(select(LinkEventRow)).all()
        assert (event.action, event.kept_person_id, event.evidence, event.actor, event.concerning) == (
            "join", alice, "agent", "zendesk user 7", f"phone:{BOB.value}")
        assert linklog.moved_counts(s, event.id)["identities"] == 1
        event_id = event.id
    _route(store, {"SM2": BOB.value})  # the claimed number writes: it is Alice now
    assert _persons(store)["SM2"] == alice

    with store.transaction() as s:
        split = undo_join(s, event_id, crms=[], by="ops", now=NOW)
    assert _persons(store) == {"SM1": alice, "SM2": split.absorbed}  # the number and its message go back
    with store.transaction() as s:
        assert graph.holder_of(s, BOB) == split.absorbed != alice
        assert graph.holder_of(s, ALICE) == alice


def test_a_crm_record_holding_two_customers_numbers_joins_them_as_crm_field_evidence(org: Org) -> None:  # noqa: F811
    org.say(CUSTOMER, "w-c1 hello", minutes_ago=3)
    org.say(STRANGER, "w-s1 hello too", minutes_ago=2)
    org.sync()
    [contact] = [c for c in org.sf.records("Contact") if CUSTOMER in (c.get("Phone"), c.get("MobilePhone"))]
    free = "MobilePhone" if contact.get("Phone") == CUSTOMER else "Phone"
    org.sf.update("Contact", contact["Id"], **{free: STRANGER})  # an agent: the same customer's other number
    org.sync()

    log = json.loads(org.cli("links", "list", f"phone:{STRANGER}", "--json").output)
    [join] = [e for e in log["events"] if e["action"] == "join"]
    assert (join["evidence"], join["actor"]) == ("crm_field", "crmhub daemon")
    assert f"salesforce record {contact['Id']}" in join["concerning"]
    assert join["moved"]["ledger"] == 1 and join["moved"]["identities"] == 1

    listed = org.cli("links", "list", f"phone:{CUSTOMER}")
    assert listed.exit_code == 0 and f"#{join['id']} " in listed.output and "(crm_field, crmhub daemon)" in listed.output
    shown = org.cli("links", "show", str(join["id"]))
    assert shown.exit_code == 0 and "moved: 1 messages (their history in every CRM)" in shown.output, shown.output


def _events(store: StateStore) -> list[tuple[str, str, str, str]]:
    with store.transaction() as s:
        return [(e.action, e.evidence, e.actor, e.concerning) for e in s.scalars(select(LinkEventRow)
                                                                                 .order_by(LinkEventRow.id))]


def test_every_join_path_logs_its_evidence_and_actor(store: StateStore) -> None:
    """A claim joined unchecked (`statements: join`), an X account's handle, a merge in the CRM."""
    with store.transaction() as s:
        jane = graph.person_for(s, email("jane@example.com"), now=NOW)
        handle = graph.person_for(s, Identity(IdentityKind.X_HANDLE, "janeonx"), now=NOW)
        unchecked = IdentityPolicy(statements=StatementPolicy(email=OnStatement.JOIN))
        claim = Interaction(Channel.SMS, Direction.INBOUND, "SM1", f"sms:{OURS.value}:{ALICE.value}", ALICE, OURS,
                            "hi, I'm jane@example.com", NOW)
        IdentityGraph(s, [], unchecked, NOW).person_of(claim)
        dm = Interaction(Channel.X_DM, Direction.INBOUND, "DM1", "x_dm:1-42", Identity(IdentityKind.X, "42", "janeonx"),
                         Identity(IdentityKind.X, "1", "crmhub_support"), "hello", NOW)
        IdentityGraph(s, [], IdentityPolicy(), NOW).person_of(dm)
        bob = graph.person_for(s, BOB, now=NOW)
        graph.add_link(s, jane, "salesforce", "Contact", "003A", now=NOW)
        graph.add_link(s, bob, "salesforce", "Contact", "003B", now=NOW)
        IdentityGraph(s, ["salesforce"], IdentityPolicy(), NOW).absorb_records([MirrorRecord(
            "salesforce", "Contact", "003A", (), {}, NOW, deleted=True, merged_into="003B")])
        assert graph.holder_of(s, BOB) == jane and graph.holder_of(s, ALICE) == jane
    assert handle > jane
    assert _events(store) == [
        ("join", "statement", "crmhub daemon (statements: join)", "email:jane@example.com"),
        ("join", "channel", "crmhub daemon", "x_handle:janeonx"),
        ("unlink_record", "crm_merge", "crmhub daemon", "salesforce record 003A"),
        ("join", "crm_merge", "crmhub daemon", "salesforce record 003A merged into 003B"),
    ]
