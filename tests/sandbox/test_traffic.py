"""The traffic generator: deterministic, internally consistent ground truth."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import phonenumbers
import pytest

from crmhub.sandbox.traffic import (
    CHANNELS,
    CRMS,
    FOLLOW_UP,
    QUIET,
    Event,
    TrafficPlan,
    generate,
    summary,
)


@pytest.fixture(scope="module")
def plan() -> TrafficPlan:
    return generate(11, persons=300, days=14)


@pytest.fixture(scope="module")
def events(plan: TrafficPlan) -> list[Event]:
    return list(plan.iter_events())


@pytest.fixture(scope="module")
def big() -> TrafficPlan:
    return generate(5, persons=1000, days=30)


@pytest.fixture(scope="module")
def big_summary(big: TrafficPlan) -> dict[str, Any]:
    return summary(big)


def _e164(text: str, region: str | None) -> str:
    number = phonenumbers.parse(text, region)
    assert phonenumbers.is_valid_number(number), text
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def test_same_seed_and_knobs_give_the_same_plan() -> None:
    one, two = generate(3, persons=80, activity=4.0), generate(3, persons=80, activity=4.0)
    assert one == two
    assert list(one.iter_events()) == list(two.iter_events())
    assert one.to_json() == two.to_json()


def test_different_seeds_or_knobs_differ() -> None:
    base = generate(1, persons=40)
    assert generate(2, persons=40).persons != base.persons
    assert list(generate(1, persons=40, activity=5.0).iter_events()) != list(base.iter_events())


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="activty"):
        generate(1, activty=3.0)
    with pytest.raises(ValueError, match="malformed_rate"):
        generate(1, malformed_rate=1.5)
    with pytest.raises(ValueError, match="aware"):
        generate(1, start=datetime(2026, 1, 5))


def test_every_phone_display_parses_to_the_persons_e164(plan: TrafficPlan) -> None:
    phones = [i for p in plan.persons for i in p.identities if i.kind in ("phone", "whatsapp")]
    phones += [s.identity for s in plan.shared if s.identity.kind == "phone"]
    formats = set()
    for ident in phones:
        assert _e164(ident.value, None) == ident.value
        for _, shown in ident.displays:
            assert _e164(shown, ident.region) == ident.value
            formats.add(shown.replace(ident.value[-4:], "####"))
    assert any("(0)" in f for f in formats) and any("." in f for f in formats) and any("(" in f for f in formats)
    assert {i.region for i in phones} == {"US", "GB"}
    assert len({i.value for i in phones if i.kind == "phone"}) == len([i for i in phones if i.kind == "phone"])


def test_crm_records_hold_messy_forms_of_known_identities(plan: TrafficPlan) -> None:
    shared = [s.identity for s in plan.shared]
    for r in plan.records:
        known = {i.key: i for i in (*plan.person(r.person_id).identities, *shared)}
        assert r.keys and set(r.keys) <= set(known)
        for shown in (r.phone, r.mobile):
            if shown is not None:  # parsed with the region of the number it stands for
                ident = next(known[k] for k in r.keys if shown in (known[k].value, *dict(known[k].displays).values()))
                assert _e164(shown, ident.region) == ident.value
        if r.email is not None:
            assert "email:" + r.email.lower() in r.keys
        assert r.kind in {"salesforce": {"contact", "lead"}, "zendesk": {"user"}, "hubspot": {"contact"}}[r.crm]
        assert set(r.as_dict()) >= {"crm", "kind", "first_name", "last_name", "email", "phone", "mobile", "tier"}
    assert any(r.email and r.email != r.email.lower() for r in plan.records)
    assert len(plan.persons_in("salesforce")) < len(plan.persons)
    assert any(all(p.person_id not in plan.persons_in(c) for c in CRMS) for p in plan.persons)


def test_shared_identities_sit_on_several_persons_records_only(plan: TrafficPlan) -> None:
    assert {s.label for s in plan.shared} == {"switchboard", "team mailbox"}
    own = {i.key for p in plan.persons for i in p.identities}
    for s in plan.shared:
        assert len(s.person_ids) >= 2 and s.identity.key not in own
        holders = {r.person_id for r in plan.records if s.identity.key in r.keys}
        assert holders == set(s.person_ids)
    assert not any(key in plan.blocked_keys for m in plan.merges for key in m.keys)


def test_conflicts_are_two_records_of_one_crm_for_one_person(plan: TrafficPlan) -> None:
    records = {r.record_id: r for r in plan.records}
    assert plan.conflicts
    for c in plan.conflicts:
        assert len(c.record_ids) >= 2
        assert {(records[i].crm, records[i].person_id) for i in c.record_ids} == {(c.crm, c.person_id)}


def test_events_are_sorted_unique_and_addressed_like_the_channel(plan: TrafficPlan, events: list[Event]) -> None:
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)
    assert len({e.event_id for e in events}) == len(events)
    assert {e.channel for e in events} == set(CHANNELS)
    assert all(plan.start <= e.occurred_at < plan.end and e.occurred_at.utcoffset() is not None for e in events)
    ours = {"sms": plan.endpoints.sms_number, "call": plan.endpoints.sms_number,
            "whatsapp": "whatsapp:" + plan.endpoints.whatsapp_number,
            "x_mention": plan.endpoints.x_user_id, "x_dm": plan.endpoints.x_user_id}
    for e in events:
        if e.valid:
            assert (e.to_addr if e.direction == "inbound" else e.from_addr) == ours[e.channel]
            them = e.from_addr if e.direction == "inbound" else e.to_addr
            if e.channel.startswith("x_"):
                assert them.isdigit()
            else:
                assert them.startswith("whatsapp:+" if e.channel == "whatsapp" else "+")
        if e.channel == "x_dm":
            low, high = e.dm_conversation_id.split("-")  # type: ignore[union-attr]  # set on every DM
            assert int(low) < int(high) and {low, high} == {e.from_addr, e.to_addr}
        if e.channel == "call":
            assert e.call_status and e.call_duration is not None
    valid = [e for e in events if e.valid]
    assert 0.1 < sum(e.direction == "outbound" for e in valid) / len(valid) < 0.5
    assert {e.language for e in valid} == {"en", "es", "fr"}
    assert any(e.media_urls and not e.text for e in valid)
    texts = " ".join(e.text.lower() for e in valid)
    assert all(word in texts for word in ("refund", "urgent", "cancel", "reembolso", "remboursement"))


def test_threads_are_consistent(plan: TrafficPlan, events: list[Event]) -> None:
    by_id = {e.event_id: e for e in events}
    threads = plan.expected_threads()
    assert sorted(i for t in threads for i in t) == sorted(e.event_id for e in events if e.valid)
    assert any(len(t) >= 3 for t in threads)
    last_of: dict[tuple[str | None, str], datetime] = {}
    for thread in threads:
        members = [by_id[i] for i in thread]
        assert len({(e.channel, e.person_id, e.conversation, e.their_key) for e in members}) == 1
        for a, b in itertools.pairwise(members):
            assert b.occurred_at - a.occurred_at < FOLLOW_UP
        for e in members[1:]:
            if e.channel == "x_mention":
                assert e.in_reply_to in thread[: thread.index(e.event_id)]
        key = (members[0].person_id, members[0].their_key)
        if key in last_of:  # the next thread of the same sender starts after a quiet spell
            assert members[0].occurred_at - last_of[key] >= QUIET
        last_of[key] = members[-1].occurred_at


def test_merges_reference_real_persons_identities_and_facts(plan: TrafficPlan, events: list[Event]) -> None:
    by_id = {e.event_id: e for e in events}
    records = {r.record_id: r for r in plan.records}
    assert {m.via for m in plan.merges} == {"message", "crm_record"}
    for m in plan.merges:
        keys = {i.key for i in plan.person(m.person_id).identities}
        assert set(m.keys) <= keys and m.keys[0] != m.keys[1]
        if m.via == "message":
            event = by_id[m.event_id]  # type: ignore[index]  # set for a message merge
            assert event.valid and event.person_id == m.person_id and event.text == m.statement
            assert event.occurred_at == m.at and event.direction == "inbound"
        else:
            record = records[m.record_id]  # type: ignore[index]  # set for a record merge
            assert record.appears_at == m.at and set(m.keys) <= set(record.keys)


def _assert_linked(plan: TrafficPlan, events: list[Event]) -> None:
    """What crmhub can know (records, merges) joins each person's identities, and no two persons."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    for r in plan.records:
        keys = [k for k in r.keys if k not in plan.blocked_keys]
        for k in keys:
            parent[find(k)] = find(keys[0])
    for m in plan.merges:
        parent[find(m.keys[0])] = find(m.keys[1])
    seen: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e.valid and e.person_id:
            seen[e.person_id].add(e.their_key)
    for r in plan.records:
        seen[r.person_id].update(k for k in r.keys if k not in plan.blocked_keys)
    roots = {pid: {find(k) for k in keys} for pid, keys in seen.items() if keys}  # blocked-only records: none
    assert all(len(r) == 1 for r in roots.values())
    assert len({next(iter(r)) for r in roots.values()}) == len(roots)


def test_by_the_end_every_persons_identities_are_linked_by_facts(plan: TrafficPlan, events: list[Event]) -> None:
    _assert_linked(plan, events)
    used: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e.valid and e.person_id:
            used[e.person_id].add(e.their_key.split(":")[0])
    assert any(kinds == {"tel", "x"} for kinds in used.values())  # SMS/WhatsApp/calls, then X


@pytest.mark.parametrize("knobs", [
    {"shared_rate": 0.5, "conflict_rate": 1.0},
    {"salesforce_rate": 1.0, "zendesk_rate": 1.0, "hubspot_rate": 1.0, "record_merge_rate": 1.0},
    {"salesforce_rate": 0.0, "zendesk_rate": 0.0, "hubspot_rate": 0.0},
    {"activity": 10.0, "second_channel_rate": 1.0, "x_rate": 1.0, "whatsapp_rate": 1.0, "whatsapp_same_number": 0.0},
])
def test_links_hold_at_extreme_knobs(knobs: dict[str, Any]) -> None:
    extreme = generate(4, persons=100, days=10, **knobs)
    events = list(extreme.iter_events())
    _assert_linked(extreme, events)
    by_id = {e.event_id: e for e in events}
    assert all(by_id[m.event_id].text == m.statement for m in extreme.merges if m.event_id)


def test_malformed_and_duplicates_come_at_the_requested_rates(big: TrafficPlan, big_summary: dict[str, Any]) -> None:
    counts = big_summary["by_kind"]
    assert counts["malformed"] / counts["valid"] == pytest.approx(big.knobs.malformed_rate, rel=0.25)
    assert counts["duplicate"] / counts["valid"] == pytest.approx(big.knobs.duplicate_rate, rel=0.25)
    quiet = generate(5, persons=200, malformed_rate=0.0, duplicate_rate=0.0)
    assert summary(quiet)["by_kind"] == {"valid": summary(quiet)["events"]}


def test_malformed_and_duplicate_items_look_the_part(plan: TrafficPlan, events: list[Event]) -> None:
    by_id = {e.event_id: e for e in events}
    reasons = set()
    for e in events:
        if e.duplicate_of:
            assert replace(e, event_id=e.duplicate_of, duplicate_of=None) == by_id[e.duplicate_of]
            assert e.external_key == e.duplicate_of
        if e.malformed:
            reasons.add(e.reason)
            assert e.conversation is None and e.direction == "inbound"
            if e.reason == "bad_phone":
                with pytest.raises((AssertionError, phonenumbers.NumberParseException)):
                    _e164(e.from_addr.removeprefix("whatsapp:"), None)
            if e.reason == "empty_body":
                assert not e.text and not e.media_urls
            if e.reason == "bad_timestamp":
                assert e.timestamp_text is not None
    assert reasons == {"bad_phone", "empty_body", "unknown_address", "bad_timestamp"}


def test_expected_history_is_every_valid_event_of_the_person(plan: TrafficPlan, events: list[Event]) -> None:
    by_id = {e.event_id: e for e in events}
    for person in plan.persons:
        history = plan.expected_history(person.person_id)
        assert history == [e.event_id for e in events if e.person_id == person.person_id and e.valid]
    flagged = [e for e in events if e.person_id and not e.valid]
    assert flagged and not any(e.event_id in plan.expected_history(e.person_id or "") for e in flagged[:20])
    merged = {m.person_id for m in plan.merges if m.via == "message"}
    assert any(len({by_id[i].their_key for i in plan.expected_history(pid)}) > 1 for pid in merged)


def test_json_round_trip(plan: TrafficPlan, events: list[Event]) -> None:
    loaded = TrafficPlan.from_json(plan.to_json())
    assert loaded == plan
    assert list(loaded.iter_events()) == events
    assert loaded.expected_history(plan.persons[0].person_id) == plan.expected_history(plan.persons[0].person_id)
    regenerated = TrafficPlan.from_json(plan.to_json(events=False))
    assert regenerated == plan and list(regenerated.iter_events()) == events


def test_stream_is_lazy_and_summary_adds_up(big: TrafficPlan, big_summary: dict[str, Any]) -> None:
    stream = big.iter_events()
    assert isinstance(stream, Iterator) and not isinstance(stream, list | tuple)
    first = next(stream)
    assert first.occurred_at >= big.start
    counts = big_summary
    assert counts["events"] == sum(counts["by_channel"].values()) == sum(counts["by_kind"].values())
    assert counts["events"] > 10_000  # 1,000 persons over 30 days: a benchmark-sized stream
    assert counts["persons_in_no_crm"] > 0 and counts["merges"]["message"] and counts["conflicts"]
    assert set(counts["persons_in_crm"]) == set(CRMS)
