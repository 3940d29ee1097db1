"""ZendeskCrm against the Zendesk emulator, through the real zenpy SDK.

Assertions look at what the emulated account holds (users, tickets,
comments, call counts), not at what the connector says it did.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from crmhub.connectors._retry import Retrier, RetryPolicy
from crmhub.connectors.salesforce import ContactObject
from crmhub.connectors.zendesk import ZendeskAuth, ZendeskCrm, ZendeskGroup
from crmhub.errors import RateLimited, Rejected, Timeout
from crmhub.model import (
    CaseSpec,
    Channel,
    Direction,
    HistoryWrite,
    Identity,
    IdentityKind,
    Interaction,
    QueueTarget,
)
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox._server import Fault
from crmhub.sandbox.zendesk import ZendeskEmulator

AGENT_PHONE = Identity(IdentityKind.PHONE, "+14155550000")
EXPORT = "GET /api/v2/incremental/users/cursor.json"
USER = ContactObject("user", {"phone": ["phone"], "email": ["email"], "x_handle": ["user_fields.x_handle"]},
                     ["tier"])


def make_crm(server: EmulatorServer, *, sleeps: list[float] | None = None, **kw: object) -> ZendeskCrm:
    retrier = Retrier(RetryPolicy(max_attempts=4), sleep=(sleeps.append if sleeps is not None else _no_wait),
                      rng=random.Random(1))
    queues = {"support": ZendeskGroup("Support", "normal"), "billing": ZendeskGroup("Billing")}
    return ZendeskCrm(subdomain="sandbox", auth=ZendeskAuth(email="agent@sandbox.zendesk.test", token="sandbox-token"),
                      objects=[USER], queues=queues, base_url=server.url, retrier=retrier,
                      job_sleep=_no_wait, **kw)  # type: ignore[arg-type]  # test knobs


def _no_wait(seconds: float) -> None:
    """Job polls and retries without real waiting (the emulator's jobs move per read)."""


def emu_of(server: EmulatorServer) -> ZendeskEmulator:
    assert isinstance(server.emulator, ZendeskEmulator)
    return server.emulator


def sms(external_id: str, customer: str, text: str, direction: Direction = Direction.INBOUND) -> Interaction:
    phone = Identity(IdentityKind.PHONE, customer, display=customer)
    inbound = direction is Direction.INBOUND
    return Interaction(Channel.SMS, direction, external_id, f"sms:{customer}", phone if inbound else AGENT_PHONE,
                       AGENT_PHONE if inbound else phone, text, datetime(2024, 5, 1, 12, tzinfo=UTC))


def new_write(person: int, item: Interaction, seq: int = 1, queue: str = "support",
              tags: tuple[str, ...] = ()) -> HistoryWrite:
    """A write for an unknown person in a new conversation."""
    return HistoryWrite(key=item.key, person_id=person, interaction=item, fields={}, contact_object="user",
                        new_contact=(item.customer,),
                        new_case=CaseSpec(f"{item.conversation_key}#{seq}", QueueTarget(queue, None, tags),
                                          {"subject": f"SMS conversation with {item.customer.value}"}))


def follow_up(person: int, user_id: int, ticket_id: int, item: Interaction) -> HistoryWrite:
    return HistoryWrite(key=item.key, person_id=person, interaction=item, fields={}, contact_object="user",
                        contact_id=str(user_id), case_id=str(ticket_id))


def state(emu: ZendeskEmulator) -> tuple[int, int, int]:
    """(users, tickets, comments) the account holds."""
    tickets = emu.tickets()
    return len(emu.users()), len(tickets), sum(len(emu.comments(t["id"])) for t in tickets)


# ---- mirror ----------------------------------------------------------------------
def test_mirror_full_load_then_only_changes(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    ann = emu.add_user("Ann", "Ann@Example.test", phone="(415) 555-0100", user_fields={"tier": "gold"})
    bob = emu.add_user("Bob", phone="415.555.0101", user_fields={"x_handle": "@Bob_Lee "})
    cid = emu.add_user("Cid", phone="+1 415 555 0102 ")
    zendesk_sandbox.emulator.clock.advance(61)  # exports leave out the last minute's changes, as Zendesk does
    crm = make_crm(zendesk_sandbox)

    pages = list(crm.mirror_pages("user", None))
    records = {r.record_id: r for page, _ in pages for r in page}
    assert emu.calls[EXPORT] == 1  # one page, stops at end_of_stream (10 exports per minute)
    assert {i.value for i in records[str(ann)].identities} == {"+14155550100", "ann@example.test"}
    assert records[str(ann)].fields == {"tier": "gold"}
    assert {(i.kind, i.value) for i in records[str(bob)].identities} == {
        (IdentityKind.PHONE, "+14155550101"), (IdentityKind.X_HANDLE, "bob_lee")}
    assert [i.value for i in records[str(cid)].identities] == ["+14155550102"]
    assert records[str(emu.default_agent_id)].deleted  # agents are not customers
    assert not records[str(ann)].deleted
    cursor = pages[-1][1]

    emu.add_identity(bob, "email", "bob@example.test")  # Bob changes
    dan = emu.add_user("Dan", phone="+44 20 7946 0958")
    zendesk_sandbox.emulator.clock.advance(61)
    changed = [r for page, _ in crm.mirror_pages("user", cursor) for r in page]
    assert sorted(r.record_id for r in changed) == sorted([str(bob), str(dan)])
    dan_record = next(r for r in changed if r.record_id == str(dan))
    assert [i.value for i in dan_record.identities] == ["+442079460958"]
    assert emu.calls[EXPORT] == 2


# ---- writes ----------------------------------------------------------------------
def seeded(emu: ZendeskEmulator) -> tuple[int, int]:
    """An existing customer with an open ticket: (user id, ticket id)."""
    user = emu.add_user("Eve", "eve@example.test", phone="+14155550199")
    return user, emu.add_ticket("Earlier", "first message", user)


def test_new_contact_new_case_and_follow_up(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    eve, eve_ticket = seeded(emu)
    first = sms("SM1", "+14155550123", "my order is late")
    writes = [
        new_write(1, first, tags=("vip",)),
        new_write(1, sms("SM2", "+14155550123", "still waiting")),  # same conversation, same new case
        follow_up(2, eve, eve_ticket, sms("SM3", "+14155550199", "any news?")),
        follow_up(2, eve, eve_ticket, sms("SM4", "+14155550199", "on its way", Direction.OUTBOUND)),
    ]
    outcomes = make_crm(zendesk_sandbox).write_history(writes)

    assert [o.key for o in outcomes] == [w.key for w in writes]
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    user = next(u for u in emu.users() if u["phone"] == "+14155550123")
    assert user["external_id"] == "crmhub-person-1" and user["role"] == "end-user"
    ticket = next(t for t in emu.tickets() if t["external_id"] == "sms:+14155550123#1")
    support = next(g["id"] for g in emu.groups() if g["name"] == "Support")
    assert ticket["requester_id"] == user["id"] and ticket["group_id"] == support
    assert ticket["priority"] == "normal" and {"crmhub", "sms", "vip"} <= set(ticket["tags"])
    assert ticket["subject"] == "SMS conversation with +14155550123"
    assert outcomes[0].contact_id == str(user["id"]) and outcomes[0].case_id == str(ticket["id"])
    assert outcomes[1].case_id == str(ticket["id"])
    [comment] = emu.comments(ticket["id"])  # both messages folded into the ticket's first comment
    assert (comment["public"], comment["author_id"]) == (True, user["id"])
    assert comment["body"] == ("2024-05-01 12:00:00 UTC, +14155550123:\nmy order is late\n\n"
                               "2024-05-01 12:00:00 UTC, +14155550123:\nstill waiting")
    assert comment["metadata"]["custom"] == {"crmhub_key": "sms:SM1", "crmhub_keys": ["sms:SM1", "sms:SM2"]}
    later = emu.comments(eve_ticket)[1:]  # an inbound and an outbound message: two runs, two comments
    assert [(c["body"], c["public"], c["author_id"]) for c in later] == [
        ("any news?", True, eve), ("on its way", False, emu.default_agent_id)]  # outbound: the agent's note


def test_same_batch_twice_creates_nothing_new(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    eve, eve_ticket = seeded(emu)
    writes = [new_write(1, sms("SM1", "+14155550123", "hello")),
              new_write(1, sms("SM2", "+14155550123", "again")),
              follow_up(2, eve, eve_ticket, sms("SM3", "+14155550199", "ping"))]
    crm = make_crm(zendesk_sandbox)
    first = crm.write_history(writes)
    held = state(emu)
    second = make_crm(zendesk_sandbox).write_history(writes)  # a fresh process retrying after a timeout

    assert state(emu) == held == (3, 2, 3)  # agent, Eve, the new user; 2 tickets; 1 folded comment + Eve's 2
    assert all(o.ok for o in second)
    assert [(o.contact_id, o.case_id) for o in second] == [(o.contact_id, o.case_id) for o in first]


def test_uncertain_failures_do_not_double(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    eve, eve_ticket = seeded(emu)
    writes = [follow_up(2, eve, eve_ticket, sms("SM3", "+14155550199", "ping"))]
    crm = make_crm(zendesk_sandbox)
    # 1. The submission's connection resets: the retry layer resubmits after re-reading the comments.
    emu.faults.add(Fault("reset", path="update_many", times=1))
    assert crm.write_history(writes)[0].ok
    # 2. The job is submitted but its status never comes back: the batch fails as a whole ...
    writes = [follow_up(2, eve, eve_ticket, sms("SM4", "+14155550199", "pong"))]
    emu.faults.add(Fault("server_error", path="job_statuses", times=None))
    with pytest.raises(Timeout):
        crm.write_history(writes)
    emu.faults.clear()
    emu.finish_jobs()  # ... while the job went through in the background
    assert crm.write_history(writes)[0].ok  # the engine's retry finds the key on the ticket
    assert [c["body"] for c in emu.comments(eve_ticket)] == ["first message", "ping", "pong"]


def test_partial_batch_failure_fails_only_that_write(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    people = [(emu.add_user(f"P{n}", phone=f"+1415555020{n}"), n) for n in range(3)]
    tickets = [emu.add_ticket("t", "first", user) for user, _ in people]
    emu.faults.add(Fault("partial_failure", path="update_many", reject=[1]))
    writes = [follow_up(10 + n, user, ticket, sms(f"SM{n}", f"+1415555020{n}", f"msg {n}"))
              for (user, n), ticket in zip(people, tickets, strict=True)]
    outcomes = make_crm(zendesk_sandbox).write_history(writes)

    assert [o.ok for o in outcomes] == [True, False, True]
    assert isinstance(outcomes[1].error, Rejected) and "RecordInvalid" in str(outcomes[1].error)
    assert [len(emu.comments(t)) for t in tickets] == [2, 1, 2]


def test_partial_failure_of_new_contacts(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    emu.faults.add(Fault("partial_failure", path="users/create_many", reject=[0]))
    writes = [new_write(1, sms("SM1", "+14155550301", "a")), new_write(2, sms("SM2", "+14155550302", "b"))]
    outcomes = make_crm(zendesk_sandbox).write_history(writes)
    assert [o.ok for o in outcomes] == [False, True]
    assert isinstance(outcomes[0].error, Rejected)
    assert [t["external_id"] for t in emu.tickets()] == ["sms:+14155550302#1"]


def test_rate_limit_is_waited_out(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    eve, eve_ticket = seeded(emu)
    emu.faults.add(Fault("rate_limit", retry_after=7, times=1))
    sleeps: list[float] = []
    outcomes = make_crm(zendesk_sandbox, sleeps=sleeps).write_history(
        [follow_up(2, eve, eve_ticket, sms("SM3", "+14155550199", "ping"))])
    assert outcomes[0].ok
    assert len(sleeps) == 1 and 7 <= sleeps[0] < 8  # Retry-After in full, never zenpy's own sleep
    assert [c["body"] for c in emu.comments(eve_ticket)][-1] == "ping"


def test_rate_limit_translation_carries_the_hint(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    emu.faults.add(Fault("rate_limit", retry_after=5, times=None))
    crm = make_crm(zendesk_sandbox, sleeps=[])
    with pytest.raises(RateLimited) as caught:
        crm.group_ids()
    assert caught.value.retry_after == 5 and caught.value.status == 429


def test_unknown_queue_is_rejected_with_the_fix(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    writes = [new_write(1, sms("SM1", "+14155550123", "hi"), queue="nowhere"),
              new_write(2, sms("SM2", "+14155550124", "refund"), queue="billing"),  # group missing in account
              new_write(3, sms("SM3", "+14155550125", "ok"))]
    outcomes = make_crm(zendesk_sandbox).write_history(writes)
    assert [o.ok for o in outcomes] == [False, False, True]
    assert "'nowhere'" in str(outcomes[0].error) and "queues.zendesk" in str(outcomes[0].error)
    assert "'Billing'" in str(outcomes[1].error) and "create the group" in str(outcomes[1].error)
    assert [t["external_id"] for t in emu.tickets()] == ["sms:+14155550125#1"]


def test_api_calls_for_a_batch_of_twenty(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    existing = [(emu.add_user(f"E{n}", phone=f"+1415555040{n}"), n) for n in range(5)]
    tickets = [emu.add_ticket("t", "first", user) for user, _ in existing]
    writes = []
    for n in range(5):  # 5 unknown people, 2 messages each, in a new conversation: 10 writes
        writes += [new_write(100 + n, sms(f"N{n}a", f"+1415555050{n}", "a")),
                   new_write(100 + n, sms(f"N{n}b", f"+1415555050{n}", "b"))]
    for (user, n), ticket in zip(existing, tickets, strict=True):  # 5 known people, 2 follow-ups each: 10 writes
        writes += [follow_up(200 + n, user, ticket, sms(f"F{n}a", f"+1415555040{n}", "c")),
                   follow_up(200 + n, user, ticket, sms(f"F{n}b", f"+1415555040{n}", "d"))]
    emu.calls.clear()
    outcomes = make_crm(zendesk_sandbox).write_history(writes)
    assert all(o.ok for o in outcomes)
    # Upper bound: 1 groups list (once per connector); 1 comments read per ticket that existed before the
    # call (5; these writes are retries, not first attempts); users/create_many and update_many (one folded
    # comment per known ticket) submitted together and polled together with show_many (1 + 1 + 2 polls: the
    # emulator's job moves queued -> working -> completed); tickets/create_many, each new ticket's two
    # messages folded into its first comment (1 + 2 polls). No external-id look-ups, since the new tickets'
    # requesters were created in this call. 1 + 5 + 4 + 3 = 13 for 20 interactions (18 before folding).
    assert sum(emu.calls.values()) <= 13, dict(emu.calls)
    assert emu.calls["GET /api/v2/job_statuses/show_many.json"] == 4, dict(emu.calls)
    assert len(emu.tickets()) == 10 and sum(len(emu.comments(t["id"])) for t in emu.tickets()) == 15  # 5x1 + 5x(1+1)


def test_first_attempts_skip_the_checks_for_an_earlier_copy(zendesk_sandbox: EmulatorServer) -> None:
    """Writes never sent before cannot be on their ticket yet: no comment reads, same result."""
    emu = emu_of(zendesk_sandbox)
    user, ticket = seeded(emu)
    item = sms("FA1", "+14155550199", "first time")
    careful = follow_up(1, user, ticket, item)
    first = replace(careful, first_attempt=True)
    emu.calls.clear()
    assert make_crm(zendesk_sandbox).write_history([first])[0].ok
    assert not [e for e in emu.calls if "comments" in e], dict(emu.calls)
    emu.calls.clear()
    assert make_crm(zendesk_sandbox).write_history([careful])[0].ok  # a retry: checks, finds it, writes nothing
    assert [e for e in emu.calls if "comments" in e]
    assert [c["body"] for c in emu.comments(ticket)].count("first time") == 1


def test_a_create_refused_for_a_taken_phone_links_the_end_user_holding_it(zendesk_sandbox: EmulatorServer) -> None:
    """Issue 13: an agent made the user seconds ago (no external id); the refused create finds it by phone."""
    emu = emu_of(zendesk_sandbox)
    held = emu.add_user("Jane Doe", phone="+14155550777")
    [outcome] = make_crm(zendesk_sandbox).write_history([new_write(7, sms("SM777", "+14155550777", "hello"))])

    assert outcome.ok and outcome.contact_id == str(held)
    assert [u["id"] for u in emu.users() if u["role"] == "end-user"] == [held]
    [ticket] = emu.tickets()
    assert ticket["requester_id"] == held
    assert emu.calls["GET /api/v2/users/search.json"] == 1  # one look-up, by phone


def test_a_taken_phone_held_by_an_agent_stays_refused(zendesk_sandbox: EmulatorServer) -> None:
    """An agent's number is not a customer's: the write is refused, nothing is linked to the agent."""
    emu = emu_of(zendesk_sandbox)
    emu.add_user("Agent Smith", "smith@sandbox.zendesk.test", role="agent", phone="+14155550778")
    [outcome] = make_crm(zendesk_sandbox).write_history([new_write(8, sms("SM778", "+14155550778", "hello"))])

    assert isinstance(outcome.error, Rejected)
    assert emu.tickets() == []


# ---- lost answers of bulk jobs (issue 13) -----------------------------------------
def _lose_answer(emu: ZendeskEmulator, path: str) -> None:
    """The next bulk POST/PUT is queued as a job, then its answer (the job id) is lost."""
    emu.faults.add(Fault("reset", after=True, path=path, times=1))


def _land(emu: ZendeskEmulator) -> None:
    """Zendesk's background worker runs every job still queued (the lost one included)."""
    emu.faults.clear()
    emu.finish_jobs()


def test_lost_answer_of_tickets_create_many_makes_each_ticket_once(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    users = {n: emu.add_user(f"C{n}", phone=f"+1415555041{n}") for n in range(4)}
    writes = [replace(new_write(n, sms(f"SM{n}", f"+1415555041{n}", f"hello {n}")), new_contact=(),
                      contact_id=str(users[n])) for n in range(4)]
    _lose_answer(emu, r"/tickets/create_many\.json")
    outcomes = make_crm(zendesk_sandbox).write_history(writes)
    _land(emu)

    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert sorted(t["external_id"] for t in emu.tickets()) == sorted(f"sms:+1415555041{n}#1" for n in range(4))
    for ticket in emu.tickets():
        assert [c["metadata"]["custom"]["crmhub_key"] for c in emu.comments(ticket["id"])] == [
            f"sms:SM{ticket['external_id'][-3]}"]
    assert sorted(o.case_id for o in outcomes) == sorted(str(t["id"]) for t in emu.tickets())


def test_lost_answer_of_tickets_update_many_adds_each_comment_once(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    people = [(emu.add_user(f"P{n}", phone=f"+1415555042{n}"), n) for n in range(3)]
    tickets = [emu.add_ticket("t", "first", user) for user, _ in people]
    writes = [follow_up(10 + n, user, ticket, sms(f"SM{n}", f"+1415555042{n}", f"msg {n}"))
              for (user, n), ticket in zip(people, tickets, strict=True)]
    _lose_answer(emu, r"/tickets/update_many\.json")
    outcomes = make_crm(zendesk_sandbox).write_history(writes)
    _land(emu)

    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert [[c["body"] for c in emu.comments(t)] for t in tickets] == [["first", f"msg {n}"] for n in range(3)]


def test_lost_answer_of_users_create_many_makes_each_user_once(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    writes = [new_write(n, sms(f"SM{n}", f"+1415555043{n}", f"hi {n}")) for n in range(3)]
    _lose_answer(emu, r"/users/create_many\.json")
    outcomes = make_crm(zendesk_sandbox).write_history(writes)
    _land(emu)

    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    customers = [u for u in emu.users() if u["role"] == "end-user"]
    assert sorted(u["external_id"] for u in customers) == [f"crmhub-person-{n}" for n in range(3)]
    assert sorted(o.contact_id for o in outcomes) == sorted(str(u["id"]) for u in customers)
    assert len(emu.tickets()) == 3 and sum(len(emu.comments(t["id"])) for t in emu.tickets()) == 3
    assert emu.calls["POST /api/v2/users/create_many.json"] == 1  # the lost job was found, not sent again


# ---- folded comments (issue 13) ---------------------------------------------------
def test_a_tickets_follow_ups_fold_into_one_comment_per_run_of_visibility_and_author(
        zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    user, ticket = seeded(emu)
    messages = [("a", Direction.INBOUND), ("b", Direction.INBOUND), ("c", Direction.OUTBOUND), ("d", Direction.INBOUND)]
    writes = [follow_up(2, user, ticket, sms(f"R{n}", "+14155550199", text, way))
              for n, (text, way) in enumerate(messages)]
    emu.calls.clear()
    outcomes = make_crm(zendesk_sandbox).write_history(writes)

    assert all(o.ok and o.case_id == str(ticket) for o in outcomes), [o.error for o in outcomes]
    later = emu.comments(ticket)[1:]
    assert [(c["public"], c["author_id"], c["metadata"]["custom"].get("crmhub_keys")) for c in later] == [
        (True, user, ["sms:R0", "sms:R1"]), (False, emu.default_agent_id, None), (True, user, None)]
    assert later[0]["body"].endswith("+14155550199:\na\n\n2024-05-01 12:00:00 UTC, +14155550199:\nb")
    assert [c["body"] for c in later[1:]] == ["c", "d"]  # a comment carrying one message is that message
    assert emu.calls["PUT /api/v2/tickets/update_many.json"] == 3  # one job per run: a, b | c | d


def test_lost_answer_of_a_folded_update_finds_its_keys_and_adds_nothing_twice(zendesk_sandbox: EmulatorServer) -> None:
    emu = emu_of(zendesk_sandbox)
    people = [(emu.add_user(f"P{n}", phone=f"+1415555044{n}"), n) for n in range(2)]
    tickets = [emu.add_ticket("t", "first", user) for user, _ in people]
    writes = [follow_up(10 + n, user, ticket, sms(f"SM{n}{m}", f"+1415555044{n}", f"msg {n}{m}"))
              for (user, n), ticket in zip(people, tickets, strict=True) for m in range(2)]
    _lose_answer(emu, r"/tickets/update_many\.json")
    outcomes = make_crm(zendesk_sandbox).write_history(writes)
    _land(emu)

    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    for (_, n), ticket in zip(people, tickets, strict=True):
        [first, folded] = emu.comments(ticket)
        assert folded["metadata"]["custom"]["crmhub_keys"] == [f"sms:SM{n}0", f"sms:SM{n}1"]
    assert emu.calls["PUT /api/v2/tickets/update_many.json"] == 1  # the lost job was found by its keys
    again = make_crm(zendesk_sandbox).write_history(writes)  # a later attempt reads the folded keys: nothing new
    assert all(o.ok for o in again) and [len(emu.comments(t)) for t in tickets] == [2, 2]


def test_history_lands_on_a_ticket_another_integration_opened_with_a_description(
        zendesk_sandbox: EmulatorServer) -> None:
    """Zendesk takes `description` as a new ticket's first comment (no metadata, not crmhub's): crmhub's key
    check reads such a ticket's comments, adds its own after it, and a retry adds nothing twice."""
    from zenpy import Zenpy
    from zenpy.lib.api_objects import Ticket

    from crmhub.connectors._http import build_session

    emu = emu_of(zendesk_sandbox)
    eve = emu.add_user("Eve", phone="+14155550199")
    other = Zenpy(subdomain="sandbox", email="agent@sandbox.zendesk.test", token="sandbox-token",
                  session=build_session(base_url=zendesk_sandbox.url), disable_cache=True)
    opened = other.tickets.create(Ticket(subject="From the web form", description="My parcel never came",
                                         requester_id=eve)).ticket
    write = replace(follow_up(2, eve, opened.id, sms("SM9", "+14155550199", "any news?")), first_attempt=False)
    crm = make_crm(zendesk_sandbox)
    for _ in range(2):
        [outcome] = crm.write_history([write])
        assert outcome.ok and outcome.case_id == str(opened.id), outcome.error
    assert [(c["body"], c["author_id"]) for c in emu.comments(opened.id)] == [
        ("My parcel never came", emu.default_agent_id), ("any news?", eve)]
