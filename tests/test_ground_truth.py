"""End to end against the generator's ground truth: merges, conflicts, full history once per CRM.

A seeded traffic plan (persons, their CRM records, their messages on every
channel, the facts that join their identities) is replayed into all five
emulators in six-hour steps, with crmhub syncing after each step. The
expected state is computed from the plan alone, never from crmhub's tables
(the admin's part, confirming what customers claim in messages, is played
from the plan too):
for every person and CRM, the person's oldest record there holds exactly the
person's replayed interactions, each interaction is in each CRM once, the
plan's conflicts are reported, and the events of one conversation thread
share one case.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crmhub.app import Hub, build_hub
from crmhub.cli import app
from crmhub.config import load_config
from crmhub.connectors.hubspot import ACTIVITY_TYPES
from crmhub.identities import from_crm_field
from crmhub.ops.links import confirm, reject
from crmhub.sandbox import EmulatorServer, SandboxClock
from crmhub.sandbox.replay import replay_events, seed_crms
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.sandbox.traffic import TrafficPlan, generate
from crmhub.store import links
from tests.crm_views import zendesk_messages

SECRETS = Path(__file__).parents[1] / "crmhub" / "defaults" / "sandbox-secrets"

SEED, PERSONS, DAYS = 3, 40, 7  # 8 merges (4 by message, 4 by a CRM record), 3 conflicts
STEP = timedelta(hours=6)
CRMS = ("salesforce", "zendesk", "hubspot")
X_TOKEN = tuple((SECRETS / name).read_text().strip() for name in ("x-access-token", "x-access-token-secret"))


@pytest.fixture
def emulators(salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer,
              twilio_sandbox: EmulatorServer, x_sandbox: EmulatorServer) -> dict[str, EmulatorServer]:
    servers = {"salesforce": salesforce_sandbox, "zendesk": zendesk_sandbox, "hubspot": hubspot_sandbox,
               "twilio": twilio_sandbox, "x": x_sandbox}
    servers["salesforce"].emulator.set_api_limit(1_000_000)  # type: ignore[attr-defined]
    servers["zendesk"].emulator.configure(rate_limit_per_minute=100_000,  # type: ignore[attr-defined]
                                          job_reads_per_step=0)  # a bulk job is done at its first status poll
    servers["hubspot"].emulator.set_limits(  # type: ignore[attr-defined]
        ten_second_max=100_000, daily_max=10_000_000, search_per_second=100)
    x = servers["x"].emulator
    for endpoint in ("GET /2/dm_events", "GET /2/users/:id/mentions", "GET /2/users/me"):  # a week in minutes
        x.set_rate_limit(endpoint, app=100_000, user=100_000)  # type: ignore[attr-defined]
    return servers


def test_generated_traffic_with_merges_leaves_every_record_with_its_persons_full_history(
        emulators: dict[str, EmulatorServer], sandbox_clock: SandboxClock, tmp_path: Path) -> None:
    # X shows only the last 30 days of DM events: the plan ends about now
    start = sandbox_clock.now().replace(second=0, microsecond=0) - timedelta(days=DAYS + 1)
    plan = generate(SEED, persons=PERSONS, days=DAYS, start=start)
    emus = {api: server.emulator for api, server in emulators.items()}
    seeded = dict(seed_crms(plan, emus).ids)
    settings = _plan_settings(plan, tmp_path, {api: s.url for api, s in emulators.items()})
    replayed: dict[str, str] = {}
    owner = _owner_of_identities(plan)
    false_claims: list[tuple[str, str]] = []
    with build_hub(load_config(settings)) as hub:
        hub.crms["zendesk"].job_poll_first = 0.01  # type: ignore[union-attr]  # the emulator's jobs finish at once
        previous: datetime | None = None
        moment = plan.start
        while moment < plan.end + STEP:
            after = previous or plan.start - timedelta(seconds=1)
            seeded.update(seed_crms(plan, emus, until=moment, start_after=after).ids)  # agents' new records
            replayed.update(replay_events(plan, emus, until=moment, start_after=previous, x_access_token=X_TOKEN).ids)
            sandbox_clock.advance(120)  # Zendesk's incremental export leaves out the last minute
            for _ in range(2):  # the second cycle delivers the relinks a merge in the first one asked for
                cycle = hub.sync_once()
                assert not cycle.failures, cycle.failures
                false_claims += _decide_claims(hub, owner)
            previous, moment = moment, moment + STEP

    # Every replayed event is expected, our own public replies on X included (read from our post timeline).
    keys = {event_id: _key(plan, event_id, item) for event_id, item in replayed.items()}
    events = {e.event_id: e for e in plan.iter_events()}
    who = {key: (events[e].person_id, events[e].their_key) for e, key in keys.items()}
    assert false_claims == []  # every claim crmhub suggested is one the plan's persons made about themselves
    for crm in CRMS:
        records = [{**r, "crm": crm} for r in _records(crm, emus[crm])]
        history = _history(crm, emus[crm])
        written = Counter(_written(crm, emus[crm]))
        assert all(n == 1 for n in written.values()), f"{crm}: written more than once: " \
            f"{[k for k, n in written.items() if n > 1][:5]}"
        for person in plan.persons:
            expected = {keys[e] for e in plan.expected_history(person.person_id) if e in keys}
            if not expected:
                continue
            mine = [r for r in records if _belongs(r, person.person_id, seeded, plan, owner)]
            assert mine, f"{crm}: no record for {person.person_id}"
            primary = min(mine, key=lambda r: (r["created"], len(r["id"]), r["id"]))
            assert set(history.get(primary["id"], ())) == expected, (
                f"{crm}: {person.person_id}'s oldest record {primary['id']} lacks "
                f"{[(k, [r for r, ks in history.items() if k in ks]) for k in sorted(expected - set(history.get(primary['id'], ())))[:3]]} / has extra "
                f"{[who.get(k) for k in sorted(set(history.get(primary['id'], ())) - expected)[:3]]}")

    # The plan's conflicts (two records of one CRM for one person) are reported, never merged
    listed = CliRunner().invoke(app, ["conflicts", "list", "--json", "--config", str(settings)])
    assert listed.exit_code == 0, listed.output
    reported = {(c["crm"], frozenset(c["records"])) for c in json.loads(listed.output)}
    for conflict in plan.conflicts:
        ids = {str(seeded[r]) for r in conflict.record_ids if r in seeded}
        assert any(crm == conflict.crm and ids <= records for crm, records in reported), (conflict, reported)

    # Threads: the events of one conversation thread share one case per CRM
    case_of = {crm: _case_of(crm, emus[crm]) for crm in CRMS}
    for thread in plan.expected_threads():
        thread_keys = [keys[e] for e in thread if e in keys]
        for crm in CRMS:
            assert len({case_of[crm].get(k) for k in thread_keys}) <= 1, (crm, thread_keys)


def _decide_claims(hub: Hub, owner: dict[tuple[str, str], str]) -> list[tuple[str, str]]:
    """The admin's part: a claim the truth (the plan) bears out is confirmed, any other rejected (and returned)."""
    false = []
    with hub.store.transaction() as session:
        for row in links.listing(session, links.LinkStatus.PENDING):
            sender, claimed = (row.sender_kind, row.sender_value), (row.claimed_kind, row.claimed_value)
            if owner.get(sender) is not None and owner.get(sender) == owner.get(claimed):
                confirm(session, row.id, policy=hub.identity, crms=list(hub.crms), now=hub.clock(), by="test")
            else:
                reject(session, row.id, now=hub.clock(), by="test")
                false.append((f"{sender[0]}:{sender[1]}", f"{claimed[0]}:{claimed[1]}"))
    return false


def _plan_settings(plan: TrafficPlan, directory: Path, urls: dict[str, str]) -> Path:
    """Sandbox settings on the plan's own numbers and X account (whose DMs the replay gives our token)."""
    settings = write_sandbox_settings(directory, urls, enabled=tuple(urls))
    ours = plan.endpoints
    text = settings.read_text()
    for old, new in (("account: crmhub_support", f"account: {ours.x_handle}"),
                     ("numbers: ['+14155550100']", f"numbers: ['{ours.sms_number}']"),
                     ("whatsapp_senders: ['+14155550199']", f"whatsapp_senders: ['{ours.whatsapp_number}']")):
        assert old in text, old
        text = text.replace(old, new)
    settings.write_text(text)
    identities = directory / "mappings" / "identities.yaml"  # the admin blocks the plan's switchboards
    shared = ", ".join(f'"{s.identity.value}"' for s in plan.shared)
    old = 'values: ["+10000000000", "support@acme.com"]'
    assert old in identities.read_text()
    identities.write_text(identities.read_text().replace(old, f'values: ["+10000000000", "support@acme.com", {shared}]'))
    return settings


# ---- reading the CRMs (their own state, through the emulators) ----------------------------------
def _key(plan: TrafficPlan, event_id: str, item: str) -> str:
    return f"{_event_channels(plan)[event_id]}:{item}"


_CHANNELS: dict[int, dict[str, str]] = {}


def _event_channels(plan: TrafficPlan) -> dict[str, str]:
    if id(plan) not in _CHANNELS:
        _CHANNELS[id(plan)] = {e.event_id: e.channel for e in plan.iter_events()}
    return _CHANNELS[id(plan)]


def _owner_of_identities(plan: TrafficPlan) -> dict[tuple[str, str], str]:
    """(kind, normalised value) -> person, for every identity not shared (shared ones link nobody)."""
    owner: dict[tuple[str, str], str] = {}
    for person in plan.persons:
        for ident in person.identities:
            if ident.key in plan.blocked_keys:
                continue
            kind = {"whatsapp": "phone"}.get(ident.kind, ident.kind)
            owner[(kind, ident.value)] = person.person_id
            if ident.kind == "x" and ident.handle:
                owner[("x_handle", ident.handle.lower())] = person.person_id
    return owner


def _belongs(record: dict[str, Any], person_id: str, seeded: dict[str, str], plan: TrafficPlan,
             owner: dict[tuple[str, str], str]) -> bool:
    """Seeded records by the plan; records crmhub created by the identities it wrote on them."""
    planned = {(r.crm, str(crm_id)): r.person_id for r in plan.records for crm_id in [seeded.get(r.record_id)]
               if crm_id}
    if (record["crm"], record["id"]) in planned:
        return planned[(record["crm"], record["id"])] == person_id
    return any(owner.get(identity) == person_id for identity in record["identities"])


def _identities(fields: dict[str, Any], kinds: dict[str, tuple[str, ...]], region: str = "US") -> list[tuple[str, str]]:
    found = []
    for kind, names in kinds.items():
        for name in names:
            identity = from_crm_field(kind, fields.get(name), region)
            if identity is not None:
                found.append((identity.kind.value, identity.value))
    return found


def _records(crm: str, emulator: Any) -> list[dict[str, Any]]:
    """Every contact-like record: id, created time, identities."""
    if crm == "salesforce":
        kinds = {"phone": ("Phone", "MobilePhone"), "email": ("Email",), "x_handle": ("X_Handle__c",)}
        return [{"id": r["Id"], "created": r["CreatedDate"], "identities": _identities(r, kinds)}
                for sobject in ("Contact", "Lead") for r in emulator.records(sobject)]
    if crm == "zendesk":
        out = []
        for user in emulator.users():
            if user.get("role") != "end-user":
                continue
            fields = {"phone": user.get("phone"), "email": user.get("email"),
                      "x_handle": (user.get("user_fields") or {}).get("x_handle")}
            out.append({"id": str(user["id"]), "created": user["created_at"],
                        "identities": _identities(fields, {k: (k,) for k in fields})})
        return out
    kinds = {"phone": ("phone", "mobilephone"), "email": ("email",), "x_handle": ("twitterhandle",)}
    return [{"id": str(c["id"]), "created": c["createdAt"], "identities": _identities(c["properties"], kinds)}
            for c in emulator.objects("contacts")]


def _history(crm: str, emulator: Any) -> dict[str, list[str]]:
    """Record id -> crmhub keys of the interactions on that record's history."""
    history: dict[str, list[str]] = defaultdict(list)
    if crm == "salesforce":
        for task in emulator.records("Task"):
            if task.get("WhoId"):
                history[task["WhoId"]].append(task["Crmhub_Key__c"])
        return history
    if crm == "zendesk":
        for ticket in emulator.tickets():
            for comment in emulator.comments(ticket["id"]):
                history[str(ticket["requester_id"])] += _comment_keys(comment)
        return history
    for object_type in ACTIVITY_TYPES:
        for activity in emulator.objects(object_type):
            key = _interaction_key(activity["properties"])
            for contact in emulator.associated(object_type, str(activity["id"]), "contacts") if key else ():
                history[str(contact)].append(key)
    return history


def _interaction_key(fields: dict[str, Any] | None) -> str | None:
    """crmhub's key of an interaction's record; None for anything else (crmhub's notes to agents among them)."""
    key = (fields or {}).get("crmhub_key")
    return None if not key or str(key).startswith("crmhub-") else str(key)


def _comment_keys(comment: dict[str, Any]) -> list[str]:
    """crmhub's interaction keys on a Zendesk comment (several on a folded one)."""
    return [key for _, k in zendesk_messages(comment) if (key := _interaction_key({"crmhub_key": k}))]


def _written(crm: str, emulator: Any) -> list[str]:
    """crmhub's key of every activity record in the CRM (a HubSpot activity may be on several contacts)."""
    if crm == "salesforce":
        return [t["Crmhub_Key__c"] for t in emulator.records("Task")]
    if crm == "zendesk":
        return [key for ticket in emulator.tickets() for comment in emulator.comments(ticket["id"])
                for key in _comment_keys(comment)]
    return [key for object_type in ACTIVITY_TYPES for a in emulator.objects(object_type)
            for key in [_interaction_key(a["properties"])] if key]


def _case_of(crm: str, emulator: Any) -> dict[str, str]:
    """crmhub key -> the case/ticket it is on."""
    if crm == "salesforce":
        return {t["Crmhub_Key__c"]: t["WhatId"] for t in emulator.records("Task")}
    if crm == "zendesk":
        return {key: str(ticket["id"]) for ticket in emulator.tickets() for comment in emulator.comments(ticket["id"])
                for key in _comment_keys(comment)}
    out = {}
    for object_type in ACTIVITY_TYPES:
        for activity in emulator.objects(object_type):
            key = _interaction_key(activity["properties"])
            tickets = emulator.associated(object_type, str(activity["id"]), "tickets") if key else {}
            if key and tickets:
                out[key] = ",".join(sorted(tickets))
    return out
