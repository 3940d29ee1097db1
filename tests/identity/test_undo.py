"""Undoing a wrong join: the history moves back onto the right records in every CRM, once; the CLI explains.

A stranger claims a customer's number, an admin confirms it by mistake, and
`crmhub links undo` splits them again. The hub runs against the three CRM
emulators; the assertions are on which contact each CRM shows each message on.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from crmhub.app import Hub, build_hub
from crmhub.cli import app
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store.schema import LinkSuggestionRow
from tests.crm_views import VIEWS, zendesk_messages
from tests.daemons import Daemon, dead_outbox_rows, drain_and_stop, kill_loop, tune_settings

OURS = "+14155550100"
CUSTOMER = "+14155550142"
STRANGER = "+14155550124"
THIRD = "+14155550177"


@dataclass
class Org:
    hub: Hub
    settings: Path
    sf: Any
    zd: Any
    hs: Any
    tw: Any

    def cli(self, *args: str) -> Any:
        return CliRunner().invoke(app, [*args, "--config", str(self.settings)])

    def say(self, sender: str, text: str, minutes_ago: float = 1) -> None:
        self.tw.receive_message(sender, OURS, text, at=datetime.now(UTC) - timedelta(minutes=minutes_ago))

    def sync(self) -> None:
        """Until nothing is left to write (Zendesk's jobs settle in a later run)."""
        for _ in range(6):
            report = self.hub.sync_once()
            assert not report.failures, report.failures
            if not any(d.waiting or d.retrying for d in report.deliveries) and not self._pending():
                return
        raise AssertionError("writes still pending after 6 runs")

    def _pending(self) -> int:
        from crmhub.store.outbox import outbox_counts
        with self.hub.store.transaction() as session:
            return sum(n for (_, status), n in outbox_counts(session).items() if status == "pending")

    def suggestion_of(self, sender: str) -> int:
        with self.hub.store.transaction() as session:
            return session.scalar(select(LinkSuggestionRow.id).where(LinkSuggestionRow.sender_value == sender))

    def holders(self, crms: Sequence[str] = ("salesforce", "zendesk", "hubspot")) -> dict[str, dict[str, list[str]]]:
        """Per CRM: each message's word (`w-...`) -> the phones of the contacts it shows on, once per copy."""
        out: dict[str, dict[str, list[str]]] = {crm: {} for crm in crms}
        if "salesforce" in crms:
            sf_phone = {c["Id"]: c.get("MobilePhone") or c.get("Phone") for c in self.sf.records("Contact")}
            for task in self.sf.records("Task"):
                out["salesforce"].setdefault(_word(task["Description"]), []).append(sf_phone[task["WhoId"]])
        if "zendesk" in crms:
            zd_phone = {u["id"]: u.get("phone") for u in self.zd.users()}
            for ticket in self.zd.tickets():
                for comment in self.zd.comments(ticket["id"]):
                    for text, _ in zendesk_messages(comment):
                        if comment["public"]:
                            out["zendesk"].setdefault(_word(text), []).append(zd_phone[ticket["requester_id"]])
        if "hubspot" in crms:
            self._hubspot(out["hubspot"])
        return out

    def _hubspot(self, out: dict[str, list[str]]) -> None:
        hs_phone = {c["id"]: c["properties"].get("mobilephone") or c["properties"].get("phone")
                    for c in self.hs.objects("contacts")}
        for message in self.hs.objects("communications"):  # on its contacts, and on its ticket's
            contacts = set(map(str, self.hs.associated("communications", message["id"], "contacts")))
            for ticket in self.hs.associated("communications", message["id"], "tickets"):
                contacts |= set(map(str, self.hs.associated("tickets", str(ticket), "contacts")))
            out.setdefault(_word(message["properties"]["hs_communication_body"]), []).append(
                "+".join(sorted(hs_phone[c] for c in contacts)))


def _word(text: str) -> str:
    return next(word for word in text.replace(":", " ").split() if word.startswith("w-"))


@pytest.fixture(params=["suggest"])
def org(request: pytest.FixtureRequest, salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer,
        hubspot_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[Org]:
    """The three CRMs and Twilio; `statements` in identities.yaml is the param (indirect, default `suggest`)."""
    sf: Any = salesforce_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    zendesk_sandbox.emulator.configure(incremental_per_minute=1000)  # type: ignore[attr-defined]  # many short syncs
    urls = {"salesforce": salesforce_sandbox.url, "zendesk": zendesk_sandbox.url, "hubspot": hubspot_sandbox.url,
            "twilio": twilio_sandbox.url}
    settings = write_sandbox_settings(tmp_path, urls, enabled=("salesforce", "zendesk", "hubspot", "twilio"))
    identities = tmp_path / "mappings" / "identities.yaml"
    identities.write_text(identities.read_text().replace("statements: suggest", f"statements: {request.param}"))
    with build_hub(load_config(settings)) as hub:
        for connector in hub.crms.values():
            if connector.name == "zendesk":
                connector.job_poll_first = 0.01  # type: ignore[union-attr]  # the emulator's jobs finish at once
        yield Org(hub, settings, sf, zendesk_sandbox.emulator, hubspot_sandbox.emulator, tw)


def wrongly_joined(org: Org) -> int:
    """The customer writes, a stranger claims the customer's number and writes twice, an admin confirms the claim,
    the stranger writes again; returns the join's link event."""
    org.say(CUSTOMER, "w-c1 my parcel is late", minutes_ago=5)
    org.sync()
    org.say(STRANGER, f"w-s1 hi, this is {CUSTOMER}", minutes_ago=4)
    org.say(STRANGER, "w-s2 any news?", minutes_ago=3.5)
    org.sync()
    confirmed = org.cli("links", "confirm", str(org.suggestion_of(STRANGER)))
    assert confirmed.exit_code == 0, confirmed.output
    org.sync()
    org.say(STRANGER, "w-s3 still waiting", minutes_ago=3)  # after the join: written onto the customer's record
    org.sync()
    joined = org.holders()
    for crm in ("salesforce", "zendesk"):
        assert joined[crm]["w-s3"] == [CUSTOMER], (crm, joined[crm])
        assert joined[crm]["w-s1"] == [CUSTOMER], (crm, joined[crm])
    listed = org.cli("links", "list", f"phone:{STRANGER}", "--json")
    assert listed.exit_code == 0, listed.output
    [event] = [e for e in json.loads(listed.output)["events"] if e["action"] == "join"]
    assert (event["evidence"], event["actor"], event["concerning"]) == ("admin", "admin via CLI",
                                                                        f"phone:{CUSTOMER}")
    return int(event["id"])


def test_an_undone_join_moves_the_history_back_in_every_crm_once_even_when_answers_are_lost(org: Org) -> None:
    event = wrongly_joined(org)
    # Each CRM loses the answer to the writes that move history back: the retry finds what they did.
    org.sf.faults.add(Fault("reset", method="POST", path="/composite", after=True))
    org.zd.faults.add(Fault("reset", method="PUT", path=r"/tickets/update_many\.json", after=True))
    org.zd.faults.add(Fault("reset", method="PUT", path=r"/tickets/\d+\.json", after=True))  # the note
    org.hs.faults.add(Fault("reset", method="POST", path=r"/associations/.*/batch/archive", after=True))

    undone = org.cli("links", "undo", str(event), "--by", "ops@example.com")
    assert undone.exit_code == 0, undone.output
    assert f"Link event {event} undone" in undone.output
    assert "Given back: 1 identities, 3 CRM records, 3 messages." in undone.output, undone.output
    org.sync()
    assert [f["hits"] for e in (org.sf, org.zd, org.hs) for f in e.faults.list()] == [1, 1, 1, 1]

    held = org.holders()
    for crm, messages in held.items():
        assert messages == {"w-c1": [CUSTOMER], "w-s1": [STRANGER], "w-s2": [STRANGER], "w-s3": [STRANGER]}, (
            crm, messages)
    # Zendesk keeps a comment's author: the stranger's ticket, given back, says whose its comments are, once.
    [stranger_ticket] = [t for t in org.zd.tickets() if any(c["public"] and "w-s1" in c["body"]
                                                            for c in org.zd.comments(t["id"]))]
    notes = [c["body"] for t in org.zd.tickets() for c in org.zd.comments(t["id"])
             if not c["public"] and c["body"].startswith("crmhub: this ticket is its requester's again")]
    assert len(notes) == 1 and notes[0] in [c["body"] for c in org.zd.comments(stranger_ticket["id"])]
    with org.hub.store.transaction() as session:
        from crmhub.store.schema import ConflictRow
        assert all(c.resolved_at is not None for c in session.scalars(select(ConflictRow)))

    # The split is in the log; the same undo again is refused; the claim is rejected for good.
    shown = org.cli("links", "show", str(event + 1))
    assert shown.exit_code == 0 and f"undoes #{event}" in shown.output and "ops@example.com" in shown.output
    assert f"moved: identity phone {STRANGER}" in shown.output, shown.output
    again = org.cli("links", "undo", str(event))
    assert again.exit_code == 1 and f"was undone already by event {event + 1}" in again.output
    [suggestion] = json.loads(org.cli("links", "list", "--json").output)
    assert suggestion["status"] == "rejected" and "ops@example.com" in suggestion["decided"]

    # The stranger's next message is theirs alone.
    org.say(STRANGER, "w-s4 hello again", minutes_ago=0.5)
    org.sync()
    assert all(messages["w-s4"] == [STRANGER] for messages in org.holders().values())


@pytest.mark.parametrize("org", ["join"], indirect=True)
def test_an_undo_creates_the_records_of_a_customer_joined_before_any_crm_knew_them(org: Org) -> None:
    """`statements: join` joins the stranger at their first message: no CRM ever had a record of them."""
    org.say(CUSTOMER, "w-c1 my parcel is late", minutes_ago=5)
    org.sync()
    org.say(STRANGER, f"w-s1 hi, this is {CUSTOMER}", minutes_ago=4)
    org.sync()
    assert all(messages["w-s1"] == [CUSTOMER] for messages in org.holders().values())
    [join] = json.loads(org.cli("links", "list", f"phone:{STRANGER}", "--json").output)["events"]
    assert (join["evidence"], join["actor"]) == ("statement", "crmhub daemon (statements: join)")
    undone = org.cli("links", "undo", str(join["id"]))
    assert undone.exit_code == 0 and "Given back: 1 identities, 0 CRM records, 1 messages." in undone.output
    org.sync()
    for crm, messages in org.holders().items():
        assert messages == {"w-c1": [CUSTOMER], "w-s1": [STRANGER]}, (crm, messages)


def test_a_join_with_a_later_join_on_top_is_refused_until_that_one_is_undone(org: Org) -> None:
    first = wrongly_joined(org)
    org.say(THIRD, f"w-t1 me too, I am {CUSTOMER}", minutes_ago=2)
    org.sync()
    assert org.cli("links", "confirm", str(org.suggestion_of(THIRD))).exit_code == 0
    org.sync()
    events = json.loads(org.cli("links", "list", f"phone:{CUSTOMER}", "--json").output)["events"]
    second = max(e["id"] for e in events if e["action"] == "join")
    assert second > first

    refused = org.cli("links", "undo", str(first))
    assert refused.exit_code == 1
    assert f"later join event {second}" in refused.output and f"crmhub links undo {second}" in refused.output
    assert org.cli("links", "undo", str(second)).exit_code == 0
    assert org.cli("links", "undo", str(first)).exit_code == 0
    org.sync()
    for crm, messages in org.holders().items():
        assert messages == {"w-c1": [CUSTOMER], "w-s1": [STRANGER], "w-s2": [STRANGER], "w-s3": [STRANGER],
                            "w-t1": [THIRD]}, (crm, messages)


def test_the_cli_explains_what_it_cannot_do(org: Org) -> None:
    org.say(CUSTOMER, "w-c1 hello", minutes_ago=2)
    org.sync()
    alone = org.cli("links", "list", f"phone:{CUSTOMER}")
    assert alone.exit_code == 0 and "no joins or splits" in alone.output
    unknown = org.cli("links", "list", "phone:+14155550111")
    assert unknown.exit_code == 1 and "knows no customer with phone +14155550111" in unknown.output
    nonsense = org.cli("links", "list", "fax:123")
    assert nonsense.exit_code == 1 and "neither a person id nor an identity" in nonsense.output
    mixed = org.cli("links", "list", "1", "--status", "pending")
    assert mixed.exit_code == 1 and "--status filters link suggestions" in mixed.output
    assert org.cli("links", "undo", "99").exit_code == 1
    assert "no link event 99" in org.cli("links", "show", "99").output


MOVED = 30  # the stranger's messages an undo moves back


@pytest.mark.slow
@pytest.mark.parametrize("crm", ["salesforce", "hubspot"])
def test_an_undo_delivered_by_a_daemon_killed_as_it_moves_history_back_ends_exactly_once(
        crm: str, request: pytest.FixtureRequest, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    """The undo is one store transaction; its writes are outbox rows, so SIGKILLs while a daemon delivers them
    (at k of n moved, from observed progress) and restarts leave every message once, on the right contact."""
    server: EmulatorServer = request.getfixturevalue(f"{crm}_sandbox")
    em: Any = server.emulator
    if crm == "salesforce":
        for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
            em.add_queue(name, name)
    twilio_sandbox.emulator.add_number(OURS)  # type: ignore[attr-defined]
    settings = write_sandbox_settings(tmp_path, {crm: server.url, "twilio": twilio_sandbox.url},
                                      enabled=(crm, "twilio"), every="1s")
    tune_settings(settings, {"delivery.batch_size": 4, "run.shutdown_grace": "10s", "delivery.lease": "3s"})
    org = Org(build_hub(load_config(settings)), settings, em, None, em, twilio_sandbox.emulator)
    with org.hub:
        org.say(CUSTOMER, "w-c1 my parcel is late", minutes_ago=40)
        org.say(STRANGER, f"w-s0 hi, this is {CUSTOMER}", minutes_ago=39)
        for n in range(1, MOVED):
            org.say(STRANGER, f"w-s{n} news?", minutes_ago=39 - n)
        org.sync()
        assert org.cli("links", "confirm", str(org.suggestion_of(STRANGER))).exit_code == 0
        org.sync()
        [join] = [e for e in json.loads(org.cli("links", "list", f"phone:{STRANGER}", "--json").output)["events"]]
    assert org.cli("links", "undo", str(join["id"])).exit_code == 0

    def on_stranger() -> int:
        """How many of the stranger's messages the CRM shows on the stranger's own contact (only)."""
        held = _holders_of(org, crm)
        return sum(1 for word, phones in held.items() if word.startswith("w-s") and phones == [STRANGER])

    assert on_stranger() == 0
    em.faults.add(Fault(kind="slow", path=VIEWS[crm].bulk_writes, times=None, delay=0.25))
    db_url = f"sqlite:///{(tmp_path / 'crmhub.db').resolve()}"
    daemon = Daemon(settings, tmp_path / "daemon.log")
    try:
        loop = kill_loop([daemon], kills=4, rng=random.Random(3), progress=on_stranger,
                         finished=lambda: on_stranger() >= MOVED, total=MOVED, moment=(0.5, 1.5))
        drain_and_stop([daemon], db_url, lambda: on_stranger() >= MOVED)
    finally:
        daemon.ensure_dead()
    held = _holders_of(org, crm)
    assert held == {"w-c1": [CUSTOMER], **{f"w-s{n}": [STRANGER] for n in range(MOVED)}}, held
    assert dead_outbox_rows(db_url) == {}
    assert loop.kills >= 2 and any(0 < n < MOVED for n in loop.progress_at_kill), loop.progress_at_kill


def _holders_of(org: Org, crm: str) -> dict[str, list[str]]:
    return org.holders(crms=(crm,))[crm]


NUMBERS = tuple(f"+1415555030{n}" for n in range(8))  # our numbers: the stranger's conversation with each, a ticket


@pytest.mark.slow
def test_a_zendesk_undo_delivered_by_a_daemon_killed_as_it_moves_tickets_back_ends_exactly_once(
        zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    """Zendesk moves history back a ticket at a time (its requester set back, a keyed note added), so the stranger
    writes to several of our numbers: one ticket each. SIGKILLs at "k of n tickets moved" (read from the emulator)
    and restarts leave every ticket on the stranger's user, every message once, and one note per ticket."""
    em: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for number in NUMBERS:
        tw.add_number(number)
    settings = write_sandbox_settings(tmp_path, {"zendesk": zendesk_sandbox.url, "twilio": twilio_sandbox.url},
                                      enabled=("zendesk", "twilio"), every="1s")
    tune_settings(settings, {"delivery.batch_size": 2, "run.shutdown_grace": "10s", "delivery.lease": "3s"})
    org = Org(build_hub(load_config(settings)), settings, None, em, None, tw)
    org.hub.crms["zendesk"].job_poll_first = 0.01  # type: ignore[attr-defined]  # the emulator's jobs finish at once
    em.configure(incremental_per_minute=1000)
    start = datetime.now(UTC) - timedelta(minutes=40)
    with org.hub:
        tw.receive_message(CUSTOMER, NUMBERS[0], "w-c1 my parcel is late", at=start)
        tw.receive_message(STRANGER, NUMBERS[0], f"w-s0 hi, this is {CUSTOMER}", at=start + timedelta(minutes=1))
        for n in range(1, 2 * len(NUMBERS)):  # two messages on each ticket
            tw.receive_message(STRANGER, NUMBERS[n // 2], f"w-s{n} news?", at=start + timedelta(minutes=1 + n))
        org.sync()
        assert org.cli("links", "confirm", str(org.suggestion_of(STRANGER))).exit_code == 0
        org.sync()
        [join] = [e for e in json.loads(org.cli("links", "list", f"phone:{STRANGER}", "--json").output)["events"]]
    stranger_tickets = {t["id"] for t in em.tickets() if any("w-s" in c["body"] for c in em.comments(t["id"]))}
    assert len(stranger_tickets) == len(NUMBERS)
    stranger_user = next(u["id"] for u in em.users() if u.get("phone") == STRANGER)
    assert stranger_user not in _requesters(em, stranger_tickets).values()  # joined: on the customer's user
    assert org.cli("links", "undo", str(join["id"])).exit_code == 0

    def moved_back() -> int:
        """k of n: the stranger's tickets whose requester is the stranger's user again."""
        return sum(user == stranger_user for user in _requesters(em, stranger_tickets).values())

    assert moved_back() == 0  # the undo is in the store only: the daemon's deliveries move the tickets
    # Jobs done within half a second, as Zendesk's workers usually are; each bulk write slowed so kills land in it.
    em.configure(job_reads_per_step=0, job_autocomplete_seconds=0.5, incremental_per_minute=100)
    em.faults.add(Fault(kind="slow", path=VIEWS["zendesk"].bulk_writes, times=None, delay=0.25))
    db_url = f"sqlite:///{(tmp_path / 'crmhub.db').resolve()}"
    daemon = Daemon(settings, tmp_path / "daemon.log")
    try:
        loop = kill_loop([daemon], kills=4, rng=random.Random(5), progress=moved_back,
                         finished=lambda: moved_back() >= len(NUMBERS), total=len(NUMBERS), moment=(0.5, 1.5))
        drain_and_stop([daemon], db_url, lambda: moved_back() >= len(NUMBERS))
    finally:
        daemon.ensure_dead()
    held = _holders_of(org, "zendesk")
    assert held == {"w-c1": [CUSTOMER], **{f"w-s{n}": [STRANGER] for n in range(2 * len(NUMBERS))}}, held
    notes = Counter(t for t in stranger_tickets for c in em.comments(t)
                    if not c["public"] and c["body"].startswith("crmhub: this ticket is its requester's again"))
    assert notes == dict.fromkeys(stranger_tickets, 1), notes
    assert dead_outbox_rows(db_url) == {}
    print(f"\nzendesk undo: {loop.kills} SIGKILLs at tickets moved back {loop.progress_at_kill} of {len(NUMBERS)}")
    assert loop.kills >= 2 and any(0 < n < len(NUMBERS) for n in loop.progress_at_kill), loop.progress_at_kill


def _requesters(em: Any, tickets: set[int]) -> dict[int, int]:
    """Each of these tickets' requester, as the Zendesk emulator holds it now."""
    return {t["id"]: t["requester_id"] for t in em.tickets() if t["id"] in tickets}
