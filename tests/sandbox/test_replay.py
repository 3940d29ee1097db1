"""A traffic plan replayed into the five emulators holds exactly what the plan says.

Expectations are computed from the plan's ground truth, independently of
`replay.py`, and checked against the emulators' state; Twilio and X are also
read back over HTTP through their official SDKs.
"""

from __future__ import annotations

import multiprocessing
import tracemalloc
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
import tweepy
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from crmhub.connectors._http import build_session
from crmhub.sandbox import Emulator, EmulatorServer
from crmhub.sandbox.replay import (
    SALESFORCE_QUEUES,
    SALESFORCE_TIERS,
    SKIP_REASONS,
    ReplayReport,
    SeedReport,
    replay_events,
    seed_crms,
)
from crmhub.sandbox.traffic import CHANNELS, CRMS, CrmRecord, Event, TrafficPlan, generate
from crmhub.sandbox.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

# Small (20 persons, 3 days, 83 events with seed 2) but with every kind of item: twins and shared
# identities in the CRMs, a record created during the traffic, every channel, an X reply, each
# malformed reason and re-deliveries.
KNOBS: dict[str, Any] = {"x_rate": 0.6, "whatsapp_rate": 0.6, "shared_rate": 0.3, "conflict_rate": 0.3,
                         "malformed_rate": 0.15, "duplicate_rate": 0.15, "activity": 4.0}


@pytest.fixture(scope="module")
def plan() -> TrafficPlan:
    return generate(seed=2, persons=20, days=3, **KNOBS)


@pytest.fixture
def crms(salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer,
         hubspot_sandbox: EmulatorServer) -> dict[str, Emulator]:
    return {"salesforce": salesforce_sandbox.emulator, "zendesk": zendesk_sandbox.emulator,
            "hubspot": hubspot_sandbox.emulator}


@pytest.fixture
def channels(twilio_sandbox: EmulatorServer, x_sandbox: EmulatorServer) -> dict[str, Emulator]:
    return {"twilio": twilio_sandbox.emulator, "x": x_sandbox.emulator}


# ---- expectations from the plan alone ------------------------------------------------


def replayable(event: Event) -> bool:
    """What the emulators can hold: see "Replaying a plan into the sandbox" in docs/sandbox/traffic.md."""
    if event.duplicate_of is not None or event.reason == "bad_timestamp":
        return False
    if event.channel in ("sms", "whatsapp"):
        return event.direction == "inbound" and event.reason != "bad_phone"
    if event.channel.startswith("x_"):
        return event.reason != "unknown_address"
    return True  # calls


def expected(plan: TrafficPlan, until: Any = None, start_after: Any = None) -> list[Event]:
    return [e for e in plan.iter_events()
            if (until is None or e.occurred_at <= until) and (start_after is None or e.occurred_at > start_after)]


def crm_ids(report: SeedReport, plan: TrafficPlan, crm: str) -> dict[str, CrmRecord]:
    """CRM id -> plan record, for the records of `crm` the report says it created."""
    by_id = {r.record_id: r for r in plan.records}
    return {crm_id: by_id[rid] for rid, crm_id in report.ids.items() if by_id[rid].crm == crm}


def dropped(report: SeedReport) -> set[tuple[str, str]]:
    return {(d.record_id, d.value) for d in report.dropped}


# ---- CRMs -----------------------------------------------------------------------------


def test_seed_crms_creates_each_initial_record_once(plan: TrafficPlan, crms: dict[str, Emulator]) -> None:
    report = seed_crms(plan, crms)

    initial = [r for r in plan.records if r.appears_at is None]
    assert list(report.ids) == [r.record_id for r in initial]  # plan order, nothing else
    assert report.pending == sum(r.appears_at is not None for r in plan.records)
    assert report.skipped_crms == ()
    sf, zd, hub = crms["salesforce"], crms["zendesk"], crms["hubspot"]
    held = {"salesforce": len(sf.records("Contact")) + len(sf.records("Lead")),  # type: ignore[attr-defined]
            "zendesk": len([u for u in zd.users() if u["role"] == "end-user"]),  # type: ignore[attr-defined]
            "hubspot": len(hub.objects("contacts"))}  # type: ignore[attr-defined]
    for crm in CRMS:
        records = [r for r in initial if r.crm == crm]
        assert held[crm] == report.created[crm] == len(records) == len(crm_ids(report, plan, crm))
        assert sorted({r.person_id for r in crm_ids(report, plan, crm).values()}) == plan.persons_in(
            crm, initially=True)


def test_salesforce_holds_the_messy_formats_as_shown(plan: TrafficPlan, crms: dict[str, Emulator]) -> None:
    report = seed_crms(plan, crms)

    sf: Any = crms["salesforce"]
    for crm_id, record in crm_ids(report, plan, "salesforce").items():
        row = sf.record(crm_id)
        assert row["Id"].startswith("00Q" if record.kind == "lead" else "003")
        assert (row["FirstName"], row["LastName"]) == (record.first_name, record.last_name)
        assert (row["Phone"], row["MobilePhone"], row["Email"]) == (record.phone, record.mobile, record.email)
        assert row["X_Handle__c"] == record.x_handle
        assert row["Tier__c"] == SALESFORCE_TIERS.get(record.tier or "")
    assert not [d for d in report.dropped if d.crm == "salesforce"]


def test_zendesk_and_hubspot_hold_every_field_or_say_why_not(plan: TrafficPlan,
                                                            crms: dict[str, Emulator]) -> None:
    report = seed_crms(plan, crms)
    lost = dropped(report)

    zd: Any = crms["zendesk"]
    users = {str(u["id"]): u for u in zd.users()}
    for crm_id, record in crm_ids(report, plan, "zendesk").items():
        user = users[crm_id]
        assert user["name"] == f"{record.first_name} {record.last_name}"
        with zd.lock:
            phones = {i["value"] for i in zd.backend.identities(int(crm_id)) if i["type"] == "phone_number"}
        if user["shared_phone_number"]:
            phones.add(user["phone"])  # a shared number is the user's phone without an identity
        for value in (record.phone, record.mobile):
            if value:
                assert value in phones or (record.record_id, value) in lost
        if record.email:
            assert user["email"] == record.email.lower() or (record.record_id, record.email) in lost
        assert user["user_fields"].get("x_handle") == record.x_handle
        assert user["user_fields"].get("tier") == record.tier

    hub: Any = crms["hubspot"]
    contacts = {c["id"]: c["properties"] for c in hub.objects("contacts")}
    for crm_id, record in crm_ids(report, plan, "hubspot").items():
        props = contacts[crm_id]
        assert (props.get("phone"), props.get("mobilephone")) == (record.phone, record.mobile)
        assert props.get("twitterhandle") == record.x_handle
        if record.email:
            assert props.get("email") == record.email.lower() or (record.record_id, record.email) in lost
    # this plan has twins and shared identities, so some fields cannot be held, each with its reason
    assert report.dropped and all(d.reason for d in report.dropped)


def test_routing_targets_exist_once_even_when_seeding_twice(plan: TrafficPlan, crms: dict[str, Emulator]) -> None:
    first = seed_crms(plan, crms)
    again = seed_crms(plan, crms, until=plan.end, start_after=plan.start)  # only the late records

    assert first.routing == again.routing
    sf: Any = crms["salesforce"]
    queues = [g for g in sf.records("Group") if g["Type"] == "Queue"]
    assert sorted(g["DeveloperName"] for g in queues) == sorted(SALESFORCE_QUEUES)
    assert {f"salesforce:{g['DeveloperName']}": g["Id"] for g in queues}.items() <= first.routing.items()
    zd: Any = crms["zendesk"]
    assert [g["name"] for g in zd.groups()].count("Support") == 1
    assert first.routing["zendesk:Support"] == str(next(g["id"] for g in zd.groups() if g["name"] == "Support"))
    assert first.routing["hubspot:Support Pipeline"] == "0"
    late = [r.record_id for r in plan.records if r.appears_at is not None]
    assert list(again.ids) == late and not set(first.ids) & set(again.ids)


def test_seed_until_adds_the_records_created_by_then(plan: TrafficPlan, crms: dict[str, Emulator]) -> None:
    late = sorted((r for r in plan.records if r.appears_at is not None), key=lambda r: r.appears_at or plan.start)
    assert late, "the plan needs a record created during the traffic"
    cut = late[0].appears_at

    report = seed_crms(plan, crms, until=cut)

    wanted = [r.record_id for r in plan.records if r.appears_at is None or (cut and r.appears_at <= cut)]
    assert list(report.ids) == wanted
    assert report.pending == len([r for r in late if cut and r.appears_at and r.appears_at > cut])


def test_crms_without_an_emulator_are_skipped_and_named(plan: TrafficPlan,
                                                        hubspot_sandbox: EmulatorServer) -> None:
    report = seed_crms(plan, {"hubspot": hubspot_sandbox.emulator})

    assert set(report.created) == {"hubspot"}
    assert report.skipped_crms == ("salesforce", "zendesk")
    with pytest.raises(TypeError, match="salesforce"):
        seed_crms(plan, {"salesforce": hubspot_sandbox.emulator})


# ---- channels ---------------------------------------------------------------------------


def test_every_replayable_event_is_one_channel_item(plan: TrafficPlan, channels: dict[str, Emulator]) -> None:
    report = replay_events(plan, channels)

    events = expected(plan)
    want = [e.event_id for e in events if replayable(e)]
    assert list(report.ids) == want  # each exactly once, in time order
    assert len(set(report.ids.values())) == len(want)
    for channel in CHANNELS:
        mine = [e for e in events if e.channel == channel]
        counts = report.channels[channel]
        assert counts.events == len(mine)
        assert counts.replayed == sum(map(replayable, mine))
        assert counts.duplicates_not_replayable == sum(e.duplicate_of is not None for e in mine)
        assert counts.events == counts.replayed + counts.duplicates_not_replayable + counts.skipped_total
        assert set(counts.skipped) <= set(SKIP_REASONS)
    assert report.channels["sms"].skipped.get("outbound_message") == sum(
        e.channel == "sms" and e.direction == "outbound" and e.duplicate_of is None for e in events)
    assert report.replies_without_parent == 0
    assert report.last_at == events[-1].occurred_at
    # every kind of item was exercised by this plan
    assert report.duplicates_not_replayable and report.skipped and report.channels["x_mention"].replayed
    assert any(e.malformed and e.event_id in report.ids for e in events)  # e.g. an empty body


def test_twilio_holds_the_plans_messages_and_calls(plan: TrafficPlan, channels: dict[str, Emulator],
                                                   twilio_sandbox: EmulatorServer) -> None:
    report = replay_events(plan, channels)

    state = channels["twilio"].snapshot()
    events = {e.event_id: e for e in expected(plan)}
    messages = {report.ids[eid]: events[eid] for eid in report.ids if events[eid].channel in ("sms", "whatsapp")}
    calls = {report.ids[eid]: events[eid] for eid in report.ids if events[eid].channel == "call"}
    assert set(state["messages"]) == set(messages)
    assert set(state["calls"]) == set(calls)
    for sid, event in messages.items():
        row = state["messages"][sid]
        assert (row["from"], row["to"], row["body"], row["direction"]) == (
            event.from_addr, event.to_addr, event.text, "inbound")
        assert row["_epoch"]["date_sent"] == event.occurred_at.timestamp()
        assert int(row["num_media"]) == len(event.media_urls)
    for sid, event in calls.items():
        row = state["calls"][sid]
        assert (row["from"], row["to"], row["status"]) == (event.from_addr, event.to_addr, event.call_status)
        assert row["direction"] == ("inbound" if event.direction == "inbound" else "outbound-api")
        assert row["_epoch"]["start_time"] == event.occurred_at.timestamp()
    numbers = {n["phone_number"] for n in state["numbers"].values()}
    assert numbers == {plan.endpoints.sms_number, plan.endpoints.whatsapp_number, *report.foreign_numbers}

    # and the SDK sees the same over HTTP
    http = TwilioHttpClient()
    http.session = build_session(base_url=twilio_sandbox.url)
    client = Client(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, http_client=http)
    assert {m.sid for m in client.messages.list(page_size=50)} == set(messages)
    assert {c.sid for c in client.calls.list(page_size=50)} == set(calls)
    assert len(client.incoming_phone_numbers.list()) == len(numbers)


def test_x_holds_the_plans_posts_and_dms_threaded(plan: TrafficPlan, channels: dict[str, Emulator],
                                                  x_sandbox: EmulatorServer) -> None:
    report = replay_events(plan, channels)

    x: Any = channels["x"]
    events = {e.event_id: e for e in expected(plan)}
    posts = {report.ids[eid]: events[eid] for eid in report.ids if events[eid].channel == "x_mention"}
    dms = {report.ids[eid]: events[eid] for eid in report.ids if events[eid].channel == "x_dm"}
    tweets = {t["id"]: t for t in x.tweets()}
    assert set(tweets) == set(posts)
    assert {d["id"] for d in x.dm_events()} == set(dms)
    for post_id, event in posts.items():
        tweet = tweets[post_id]
        assert tweet["author_id"] == event.from_addr
        assert tweet["created_at"].startswith(event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S"))
        parent = report.ids.get(event.in_reply_to or "")
        assert [r["id"] for r in tweet.get("referenced_tweets", [])] == ([parent] if parent else [])
    for dm in x.dm_events():
        event = dms[dm["id"]]
        assert (dm["sender_id"], dm["text"]) == (event.from_addr, event.text)
        assert dm["dm_conversation_id"] == event.dm_conversation_id

    # the support account is the plan's, and tweepy reads its mentions over HTTP
    client = tweepy.Client(bearer_token="sandbox-bearer", wait_on_rate_limit=False)
    client.session = build_session(base_url=x_sandbox.url)
    support = client.get_user(username=plan.endpoints.x_handle).data
    assert str(support.id) == plan.endpoints.x_user_id
    mentions = client.get_users_mentions(support.id, max_results=100)
    inbound = {pid for pid, e in posts.items() if e.direction == "inbound"}
    assert {str(t.id) for t in mentions.data or []} == inbound


def test_same_seed_same_replay(plan: TrafficPlan, crms: dict[str, Emulator],
                               channels: dict[str, Emulator]) -> None:
    def run() -> tuple[SeedReport, ReplayReport]:
        for emulator in (*crms.values(), *channels.values()):
            emulator.reset()
        again = generate(seed=plan.seed, persons=len(plan.persons), days=plan.days, **KNOBS)
        return seed_crms(again, crms), replay_events(again, channels)

    (seed_a, replay_a), (seed_b, replay_b) = run(), run()

    assert seed_a == seed_b  # CRM ids are sequences in a fresh emulator
    assert list(replay_a.ids) == list(replay_b.ids)
    assert replay_a.channels == replay_b.channels
    on_x = {e.event_id for e in plan.iter_events() if e.channel.startswith("x_")}
    x_ids = [eid for eid in replay_a.ids if eid in on_x]
    assert x_ids and [replay_a.ids[e] for e in x_ids] == [replay_b.ids[e] for e in x_ids]  # from the plan's times


def test_until_and_start_after_split_a_replay_without_gaps_or_repeats(
        plan: TrafficPlan, channels: dict[str, Emulator]) -> None:
    middle = plan.start + timedelta(days=1, hours=7)

    first = replay_events(plan, channels, until=middle)
    second = replay_events(plan, channels, start_after=middle)

    assert first.last_at is not None and first.last_at <= middle
    assert all(e.occurred_at <= middle for e in expected(plan) if e.event_id in first.ids)
    assert not set(first.ids) & set(second.ids)
    assert [*first.ids, *second.ids] == [e.event_id for e in expected(plan) if replayable(e)]
    for channel in CHANNELS:
        assert first.channels[channel].events + second.channels[channel].events == sum(
            e.channel == channel for e in plan.iter_events())
    state = channels["twilio"].snapshot()
    assert len(state["messages"]) + len(state["calls"]) == sum(
        1 for e in plan.iter_events() if replayable(e) and not e.channel.startswith("x_"))


def test_keep_ids_false_keeps_only_counts(plan: TrafficPlan, channels: dict[str, Emulator]) -> None:
    report = replay_events(plan, channels, keep_ids=False)

    assert report.ids == {} and not report.ids_kept
    assert report.replayed == sum(map(replayable, plan.iter_events()))
    x: Any = channels["x"]
    assert len(x.tweets()) + len(x.dm_events()) == report.channels["x_mention"].replayed + report.channels[
        "x_dm"].replayed


def test_events_of_a_missing_emulator_are_counted_as_skipped(plan: TrafficPlan,
                                                             twilio_sandbox: EmulatorServer) -> None:
    report = replay_events(plan, {"twilio": twilio_sandbox.emulator})

    for channel in ("x_mention", "x_dm"):
        counts = report.channels[channel]
        assert counts.skipped_total == counts.events - counts.duplicates_not_replayable
        assert set(counts.skipped) <= {"no_emulator"}
    assert report.channels["sms"].replayed > 0


def test_reports_are_frozen(plan: TrafficPlan, channels: dict[str, Emulator]) -> None:
    report = replay_events(plan, channels, until=plan.start + timedelta(hours=12))

    with pytest.raises(AttributeError):
        report.ids_kept = False  # type: ignore[misc]
    counts: Mapping[str, int] = report.channels["sms"].skipped
    with pytest.raises(TypeError):
        counts["x"] = 1  # type: ignore[index]
    assert Counter(report.skipped) == sum((Counter(c.skipped) for c in report.channels.values()), Counter())


def test_replay_adds_no_memory_per_event_to_the_stream() -> None:
    """`iter_events` grows with persons (and merges), not events; the replay loop adds a constant.

    Measured in a process of its own: tracemalloc counts every thread's allocations, and a test worker runs
    other tests' emulator and delivery threads meanwhile.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        for days in (8, 64):
            events, replay, stream = pool.submit(_replay_and_stream_peaks, days).result(timeout=300)
            assert events > 50 * days
            assert replay < stream + 30_000, (days, stream, replay)


def _replay_and_stream_peaks(days: int) -> tuple[int, int, int]:
    """(events replayed, peak bytes of the replay loop alone, peak bytes of streaming the plan's events)."""
    def peak(run: Callable[[], object]) -> tuple[object, int]:
        tracemalloc.start()
        try:
            return run(), tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    plan = generate(seed=5, persons=100, days=days)
    plan.persons_in("salesforce")  # the plan's own caches are filled outside the measurement
    report, replay = peak(partial(replay_events, plan, {}, keep_ids=False))  # the loop alone, no state
    _, stream = peak(partial(_count, plan))
    assert isinstance(report, ReplayReport)
    return report.events, replay, stream


def _count(plan: TrafficPlan) -> int:
    return sum(1 for _ in plan.iter_events())


def test_support_account_reads_its_replayed_dms_with_the_given_token(x_sandbox: EmulatorServer) -> None:
    # X shows 30 days of DMs, in sandbox time: this plan ends now
    start = x_sandbox.emulator.clock.now().replace(microsecond=0) - timedelta(days=4)
    plan = generate(seed=2, persons=20, days=3, start=start, **KNOBS)

    report = replay_events(plan, {"x": x_sandbox.emulator}, x_access_token=("acme-token", "acme-secret"))

    client = tweepy.Client(consumer_key="sandbox-consumer-key", consumer_secret="sandbox-consumer-secret",
                           access_token="acme-token", access_token_secret="acme-secret", wait_on_rate_limit=False)
    client.session = build_session(base_url=x_sandbox.url)
    assert str(client.get_me().data.id) == plan.endpoints.x_user_id
    seen = {str(dm.id) for dm in client.get_direct_message_events(max_results=100).data or []}
    dms = {e.event_id for e in plan.iter_events() if e.channel == "x_dm"}
    assert seen == {item for eid, item in report.ids.items() if eid in dms} and seen
