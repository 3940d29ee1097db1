"""The state store on SQLite and on the local PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from crmhub.identities import email, phone
from crmhub.model import CaseState, Channel, Direction, Interaction, Malformed, MirrorRecord, OutboxStatus, WritePriority
from crmhub.store import StateStore, graph, ledger, migrate, open_store, outbox
from crmhub.store.schema import LedgerRow, OutboxRow
from crmhub.sync.renewal import LeaseRenewal

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
OURS = phone("+14155550199")


def sms(sid: str, sender: str = "+14155550100", text: str = "hello") -> Interaction:
    customer = phone(sender)
    return Interaction(Channel.SMS, Direction.INBOUND, sid, f"sms:{OURS.value}:{customer.value}", customer, OURS,
                       text, NOW, raw={"sid": sid})


def test_schema_is_at_the_newest_migration(store: StateStore) -> None:
    assert migrate.current_revision(store.engine) == migrate.head_revision()


@pytest.mark.postgres
def test_several_processes_starting_together_on_a_new_postgresql_database_all_migrate_it(
        fresh_postgres_url: str) -> None:
    """Daemons started at once each run the migrations at start; none may fail on another's tables."""
    starters = 4
    barrier = threading.Barrier(starters)
    errors: list[Exception] = []

    def start() -> None:
        barrier.wait(timeout=10)
        try:
            open_store(fresh_postgres_url).close()
        except Exception as exc:  # noqa: BLE001  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=start, daemon=True) for _ in range(starters)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a start hung waiting for another's migration"
    assert errors == []
    store = open_store(fresh_postgres_url, migrate_schema=False)
    try:
        assert migrate.current_revision(store.engine) == migrate.head_revision()
    finally:
        store.close()


def test_ingest_stores_each_interaction_once_across_pages_and_within_a_page(store: StateStore) -> None:
    with store.transaction() as s:
        first = ledger.ingest_page(s, [sms("SM1"), sms("SM2"), sms("SM1")], now=NOW)
    with store.transaction() as s:
        second = ledger.ingest_page(s, [sms("SM2"), sms("SM3")], now=NOW)
    assert (first.stored, first.repeats) == (2, 1)
    assert (second.stored, second.repeats) == (1, 1)
    with store.transaction() as s:
        assert ledger.ledger_counts(s) == {"sms": 3}


def test_page_cursor_and_dead_letters_commit_together_or_not_at_all(store: StateStore) -> None:
    bad = Malformed("twilio", "SMbad", "sender is not a phone number", {"sid": "SMbad"})
    with pytest.raises(RuntimeError), store.transaction() as s:
        ledger.ingest_page(s, [sms("SM1")], [bad], now=NOW, cursor=("twilio", "messages", "", "c1"))
        raise RuntimeError("crash before commit")
    with store.transaction() as s:
        assert ledger.ledger_counts(s) == {}
        assert ledger.load_cursor(s, "twilio", "messages") is None
        assert ledger.open_dead_letter_count(s) == 0
        ledger.ingest_page(s, [sms("SM1")], [bad], now=NOW, cursor=("twilio", "messages", "", "c1"))
    with store.transaction() as s:
        assert ledger.load_cursor(s, "twilio", "messages") == "c1"
        [letter] = ledger.open_dead_letters(s)
        assert (letter.source, letter.ref, letter.reason) == ("twilio", "SMbad", "sender is not a phone number")


def test_interaction_round_trips_through_the_ledger_with_aware_times(store: StateStore) -> None:
    original = sms("SM9", text="unicode ✓")
    with store.transaction() as s:
        ledger.ingest_page(s, [original], now=NOW)
    with store.transaction() as s:
        [row] = ledger.unprocessed(s, 10)
        restored = ledger.to_interaction(row)
    assert restored == original
    assert restored.occurred_at.tzinfo is not None


def test_one_identity_is_one_person(store: StateStore) -> None:
    with store.transaction() as s:
        first = graph.person_for(s, phone("(415) 555-0100"), now=NOW)
        again = graph.person_for(s, phone("+1 415.555.0100"), now=NOW)
        other = graph.person_for(s, email("Jane@Example.com"), now=NOW)
    assert first == again != other


def test_mirror_matches_by_normalised_identity_oldest_first(store: StateStore) -> None:
    older = MirrorRecord("salesforce", "Contact", "003A", (phone("(415) 555-0100"),), {"Tier__c": "gold"},
                         NOW, created_at=NOW - timedelta(days=2))
    newer = MirrorRecord("salesforce", "Contact", "003B", (phone("+1 415 555 0100"), email("a@b.co")), {},
                         NOW, created_at=NOW - timedelta(days=1))
    with store.transaction() as s:
        graph.upsert_mirror(s, [newer, older])
        matches = graph.mirror_matches(s, "salesforce", [phone("4155550100")])
        assert [m.record_id for m in matches] == ["003A", "003B"]
        graph.upsert_mirror(s, [MirrorRecord("salesforce", "Contact", "003B", (email("a@b.co"),), {}, NOW)])
        assert [m.record_id for m in graph.mirror_matches(s, "salesforce", [phone("4155550100")])] == ["003A"]
        assert graph.mirror_matches(s, "hubspot", [phone("4155550100")]) == []


def test_a_mirror_page_costs_the_same_statements_for_10_records_as_for_300(store: StateStore) -> None:
    """Issue 13: a refreshed page is written in a few statements, not a few per record; deletions leave it."""
    from sqlalchemy import event

    def page(first: int, count: int, version: int, deleted: frozenset[int] = frozenset()) -> list[MirrorRecord]:
        return [MirrorRecord("zendesk", "User", f"{n}", (phone(f"+1415555{n:04d}"), email(f"c{n}.{version}@x.co")),
                             {"v": version}, NOW, deleted=n in deleted) for n in range(first, first + count)]

    def statements(records: list[MirrorRecord]) -> int:
        count = [0]

        def counted(*_: object) -> None:
            count[0] += 1

        event.listen(store.engine, "before_cursor_execute", counted)
        try:
            with store.transaction() as s:
                graph.upsert_mirror(s, records)
        finally:
            event.remove(store.engine, "before_cursor_execute", counted)
        return count[0]

    assert statements(page(0, 10, 1)) == statements(page(1000, 300, 1))  # new records only
    # Changed records, some new, one deleted in the CRM:
    assert statements(page(0, 20, 2, deleted=frozenset({7}))) == statements(page(1000, 400, 2, deleted=frozenset({1001})))
    with store.transaction() as s:
        assert [m.record_id for m in graph.mirror_matches(s, "zendesk", [email("c3.2@x.co")])] == ["3"]
        assert graph.mirror_matches(s, "zendesk", [email("c3.1@x.co")]) == []  # its old identities left the index
        assert graph.mirror_matches(s, "zendesk", [phone("+14155550007")]) == []  # deleted in the CRM
        assert [m.fields for m in graph.mirror_matches(s, "zendesk", [phone("+14155551399")])] == [{"v": 2}]  # new


def _one_pending(store: StateStore, count: int = 1) -> None:
    with store.transaction() as s:
        ledger.ingest_page(s, [sms(f"SM{i}") for i in range(count)], now=NOW)
        for row in s.scalars(select(LedgerRow)):
            outbox.enqueue(s, row.id, ["salesforce"], f"sms:{row.external_id}", now=NOW)


def test_outbox_enqueue_is_idempotent_and_claims_lease_rows(store: StateStore) -> None:
    _one_pending(store)
    with store.transaction() as s:
        row = s.scalar(select(LedgerRow))
        assert row is not None
        outbox.enqueue(s, row.id, ["salesforce"], "sms:SM0", now=NOW)
    with store.transaction() as s:
        claimed = outbox.claim_due(s, "salesforce", 10, now=NOW, lease=timedelta(minutes=5))
        assert [(c.claims, c.attempts) for c in claimed] == [(1, 0)]  # an attempt once its outcome is recorded
    with store.transaction() as s:
        assert outbox.claim_due(s, "salesforce", 10, now=NOW, lease=timedelta(minutes=5)) == []
        later = outbox.claim_due(s, "salesforce", 10, now=NOW + timedelta(minutes=6), lease=timedelta(minutes=5))
        assert len(later) == 1
        outbox.mark_done(s, later[0].id, "00T1", now=NOW)
    with store.transaction() as s:
        assert outbox.outbox_counts(s) == {("salesforce", OutboxStatus.DONE.value): 1}



def test_a_claim_whose_lease_ran_out_is_no_attempt_and_only_its_outcome_counts(store: StateStore) -> None:
    _one_pending(store)
    lease = timedelta(minutes=5)
    for n in range(1, 4):  # daemons that died holding the row: no outcome recorded, the lease runs out
        with store.transaction() as s:
            [row] = outbox.claim_due(s, "salesforce", 10, now=NOW + n * lease, lease=lease)
            assert (row.claims, row.attempts, row.next_attempt_at) == (n, 0, NOW + (n + 1) * lease)
    with store.transaction() as s:
        [row] = outbox.claim_due(s, "salesforce", 10, now=NOW + 4 * lease, lease=lease)
        outbox.mark_retry(s, row.id, "503", retry_at=NOW + 4 * lease + timedelta(seconds=30))
    with store.transaction() as s:
        stored = s.get(OutboxRow, row.id)
        assert stored is not None and (stored.claims, stored.attempts) == (0, 1)  # an answer: one attempt, no claim cut short since

def _lease_ends(store: StateStore) -> dict[int, datetime]:
    with store.transaction() as s:
        return {row.id: row.next_attempt_at.replace(tzinfo=UTC) for row in s.scalars(select(OutboxRow))}


def test_a_renewal_extends_only_the_rows_its_claim_still_holds(store: StateStore) -> None:
    """Renewed with the lease end the claim set, rows are extended; with a stale one (another claim took them
    after the lease lapsed, or an outcome was recorded), nothing is."""
    _one_pending(store, count=3)
    lease = timedelta(minutes=5)
    with store.transaction() as s:
        claims = outbox.claim_due(s, "salesforce", 10, now=NOW, lease=lease)
    ids = {c.id for c in claims}
    first_end, renewed_end = NOW + lease, NOW + timedelta(minutes=7)
    with store.transaction() as s:
        assert outbox.renew(s, {first_end: ids}, until=renewed_end) == ids
    assert _lease_ends(store) == dict.fromkeys(ids, renewed_end)
    with store.transaction() as s:  # the lease end it set before: no row carries it any more
        assert outbox.renew(s, {first_end: ids}, until=NOW + timedelta(minutes=9)) == set()
        outbox.mark_done(s, claims[0].id, "00T1", now=NOW)
    with store.transaction() as s:  # the renewed lease lapses; another daemon claims what is left
        taken = outbox.claim_due(s, "salesforce", 10, now=renewed_end + timedelta(seconds=1), lease=lease)
    assert {c.id for c in taken} == ids - {claims[0].id}
    before = _lease_ends(store)
    with store.transaction() as s:  # the first holder renews late: it extends nothing, done or re-claimed
        assert outbox.renew(s, {renewed_end: ids}, until=renewed_end + timedelta(minutes=1)) == set()
    assert _lease_ends(store) == before


def test_a_lease_renewal_keeps_the_rows_still_held_and_reports_the_ones_lost(store: StateStore) -> None:
    _one_pending(store, count=2)
    lease = timedelta(minutes=5)
    with store.transaction() as s:
        kept, lost = outbox.claim_due(s, "salesforce", 10, now=NOW, lease=lease)
    with store.transaction() as s:  # `lost`'s lease lapsed (say the store was out of reach): another claim took it
        outbox.release(s, [lost.id], now=NOW)
        [taken] = outbox.claim_due(s, "salesforce", 10, now=NOW, lease=lease * 2)
    clock = [NOW + timedelta(minutes=2)]
    renewal = LeaseRenewal(store, outbox.renew, {c.id: c.next_attempt_at for c in (kept, lost)}, lease=lease,
                           clock=lambda: clock[0], crm="salesforce", keys={kept.id: "sms:SM0", lost.id: "sms:SM1"})
    with renewal:  # a block far shorter than lease/3 renews nothing
        pass
    assert (renewal.renewals, renewal.lost) == (0, [])
    renewal.renew_now()
    clock[0] += timedelta(minutes=2)
    renewal.renew_now()  # fenced on the lease end the first renewal set
    assert (renewal.renewals, renewal.lost) == (2, [lost.id])
    assert _lease_ends(store) == {kept.id: clock[0] + lease, taken.id: NOW + lease * 2}


def test_a_waiting_row_an_earlier_claim_may_have_sent_stays_uncertain(store: StateStore) -> None:
    """A claim cut short after its job landed, then a wait on another job: the claim after is still uncertain.

    The Zendesk double of tests/test_several_daemons.py: a daemon died after submitting a ticket, the next
    claim (uncertain) held the write behind its batch's users job, and the claim after that took the write for
    never sent and opened the ticket again.
    """
    _one_pending(store, count=2)
    lease = timedelta(minutes=5)
    with store.transaction() as s:
        first = outbox.claim_due(s, "salesforce", 10, now=NOW, lease=lease)  # the daemon that dies after sending
    later = NOW + 2 * lease
    with store.transaction() as s:
        claims = outbox.claim_due(s, "salesforce", 10, now=later, lease=lease)
        assert [c.claims for c in claims] == [2, 2]  # uncertain: each may have been sent
        outbox.record_outcomes(s, [
            outbox.Outcome(claims[0].id, OutboxStatus.PENDING, job_ref="held:j2:-1", retry_at=later,
                           sent_before=True),
            outbox.Outcome(claims[1].id, OutboxStatus.PENDING, job_ref="c:j3:0", retry_at=later)], now=later)
    with store.transaction() as s:
        again = {c.id: c for c in outbox.claim_due(s, "salesforce", 10, now=later, lease=lease)}
    assert [(again[c.id].claims, again[c.id].attempts) for c in first] == [(2, 0), (1, 0)]  # no attempt either way


def test_claims_go_by_priority_and_leave_what_the_budget_does_not_allow(store: StateStore) -> None:
    lease = timedelta(minutes=5)
    ranks = [WritePriority.BACKFILL, WritePriority.FOLLOW_UP, WritePriority.NEW_CASE, WritePriority.REPLY,
             WritePriority.FOLLOW_UP]
    with store.transaction() as s:
        ledger.ingest_page(s, [sms(f"SM{i}", sender=f"+1415555010{i}") for i in range(len(ranks))], now=NOW)
        rows = list(s.scalars(select(LedgerRow).order_by(LedgerRow.id)))
        for row, rank in zip(rows, ranks, strict=True):
            outbox.enqueue(s, row.id, ["salesforce", "zendesk"], f"sms:{row.external_id}", now=NOW,
                           priority={"salesforce": rank})  # zendesk: the default, a follow-up
        conversation = rows[2].conversation_key
        assert outbox.case_pending(s, "salesforce", conversation) and not outbox.case_pending(s, "zendesk",
                                                                                              conversation)
    with store.transaction() as s:
        first = outbox.claim_due(s, "salesforce", 10, now=NOW, lease=lease, max_priority=WritePriority.NEW_CASE)
        assert [c.priority for c in first] == [WritePriority.REPLY, WritePriority.NEW_CASE]
        outbox.save_allowance(s, "salesforce", WritePriority.NEW_CASE, now=NOW, daily_remaining=150,
                              daily_limit=1000, reserve=200)
        outbox.save_allowance(s, "zendesk", WritePriority.BACKFILL, now=NOW)
    with store.transaction() as s:
        assert outbox.held_counts(s) == {"salesforce": 3}  # two follow-ups and the backfill
        assert outbox.count_held(s, "salesforce", WritePriority.FOLLOW_UP) == 1
        assert [(b.crm, b.max_priority, b.daily_remaining) for b in outbox.allowances(s)] == [
            ("salesforce", WritePriority.NEW_CASE, 150), ("zendesk", WritePriority.BACKFILL, None)]
        outbox.release(s, [c.id for c in first], now=NOW)
    with store.transaction() as s:  # released: due again at once, the claim still counted (as a claim)
        rest = outbox.claim_due(s, "salesforce", 10, now=NOW, lease=lease)
        assert [(c.priority, c.claims) for c in rest] == [
            (WritePriority.REPLY, 2), (WritePriority.NEW_CASE, 2), (WritePriority.FOLLOW_UP, 1),
            (WritePriority.FOLLOW_UP, 1), (WritePriority.BACKFILL, 1)]
        assert [c.priority for c in outbox.claim_due(s, "zendesk", 10, now=NOW, lease=lease)] == [
            WritePriority.FOLLOW_UP] * len(ranks)


@pytest.mark.postgres
def test_concurrent_claims_on_postgresql_take_turns_and_never_share_a_row(store: StateStore) -> None:
    if store.dialect != "postgresql":
        pytest.skip("claims between processes are PostgreSQL's; SQLite runs one daemon per file")
    _one_pending(store, count=20)
    first_claimed, first_may_commit = threading.Event(), threading.Event()
    claimed: dict[str, list[int]] = {}

    def claim(name: str) -> None:
        with store.transaction() as s:
            claimed[name] = [r.id for r in outbox.claim_due(s, "salesforce", 15, now=NOW,
                                                            lease=timedelta(minutes=5))]
            if name == "first":
                first_claimed.set()
                first_may_commit.wait(timeout=10)

    first = threading.Thread(target=claim, args=("first",))
    second = threading.Thread(target=claim, args=("second",))
    first.start()
    assert first_claimed.wait(timeout=10)
    second.start()
    second.join(timeout=0.5)
    assert second.is_alive() and "second" not in claimed  # waits for the first claim's transaction
    first_may_commit.set()
    first.join(timeout=10)
    second.join(timeout=10)
    assert len(claimed["first"]) == 15 and len(claimed["second"]) == 5
    assert not set(claimed["first"]) & set(claimed["second"])
    with store.transaction() as s:
        assert all((r.claims, r.attempts) == (1, 0) for r in s.scalars(select(OutboxRow)))


Save = Callable[[Session, int, int], object]  # (session, which of the two daemons, a person's id)
Read = Callable[[Session, int], object]
SAME_NEW_ROW: dict[str, tuple[Save, Read, object]] = {
    "a stream's first cursor": (
        lambda s, n, _: ledger.save_cursor(s, "twilio", "messages", "AC1", f"daemon {n}", now=NOW),
        lambda s, _: ledger.load_cursor(s, "twilio", "messages", "AC1"), "daemon 2"),
    "a CRM's first budget record": (
        lambda s, n, _: outbox.save_allowance(s, "zendesk", WritePriority.BACKFILL, now=NOW, daily_remaining=n),
        lambda s, _: [(a.crm, a.daily_remaining) for a in outbox.allowances(s)], [("zendesk", 2)]),
    "a CRM record's link": (
        lambda s, _, person: graph.add_link(s, person, "zendesk", "user", "77", now=NOW),
        lambda s, person: [link.record_id for link in graph.links_of(s, person, "zendesk")], ["77"]),
}


@pytest.mark.postgres
@pytest.mark.parametrize("what", list(SAME_NEW_ROW))
def test_two_daemons_writing_the_same_new_row_at_once_both_succeed(store: StateStore, what: str) -> None:
    """The second waits for the first's uncommitted row, then updates it (or leaves it): neither fails."""
    if store.dialect != "postgresql":
        pytest.skip("concurrent transactions are PostgreSQL's; SQLite runs one daemon per file")
    save, read, expected = SAME_NEW_ROW[what]
    with store.transaction() as s:
        person = graph.person_for(s, phone("+14155550100"), now=NOW)
    first_saved = threading.Event()
    errors: list[Exception] = []

    def waiting_on_a_lock() -> bool:
        with store.engine.connect() as connection:
            return bool(connection.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")))

    def first() -> None:
        with store.transaction() as s:
            save(s, 1, person)
            s.flush()
            first_saved.set()
            deadline = time.monotonic() + 10
            while not waiting_on_a_lock() and time.monotonic() < deadline:  # the second waits for our row
                time.sleep(0.01)

    def second() -> None:
        assert first_saved.wait(timeout=10)
        try:
            with store.transaction() as s:
                save(s, 2, person)
        except Exception as exc:  # noqa: BLE001  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    with store.transaction() as s:
        assert read(s, person) == expected


def test_a_conversation_waits_while_one_of_its_writes_opens_the_case(store: StateStore) -> None:
    """Another write of the conversation claimed meanwhile would look for the case, miss it, and open a second."""
    _one_pending(store, count=2)  # two messages of one conversation
    lease = timedelta(minutes=5)
    with store.transaction() as s:
        [opener] = outbox.claim_due(s, "salesforce", 1, now=NOW, lease=lease)
        thread = outbox.open_thread(s, "salesforce", sms("SM0").conversation_key, "support", now=NOW)
    with store.transaction() as s:  # the opener is out, its case not recorded: the follow-up waits
        assert outbox.claim_due(s, "salesforce", 10, now=NOW, lease=lease) == []
    with store.transaction() as s:  # once the lease ends, both are due again (one batch puts them in order)
        again = outbox.claim_due(s, "salesforce", 10, now=NOW + lease, lease=lease)
        [waited] = [r.id for r in again if r.id != opener.id]
        assert len(again) == 2
        outbox.mark_retry(s, waited, "503", retry_at=NOW + lease)  # the follow-up backs off a little...
        outbox.set_thread_record(s, thread.id, "500A")  # ... and the opener has opened the case, still leased
    with store.transaction() as s:  # a conversation with its case: writes go as they come due
        [follow_up] = outbox.claim_due(s, "salesforce", 10, now=NOW + lease, lease=lease)
        assert follow_up.id == waited


def test_threads_open_then_move_to_the_next_case_after_closing(store: StateStore) -> None:
    with store.transaction() as s:
        thread = outbox.open_thread(s, "salesforce", "sms:a:b", "support", now=NOW)
        outbox.set_thread_record(s, thread.id, "500A")
        again = outbox.open_thread(s, "salesforce", "sms:a:b", "support", now=NOW)
        assert (again.id, again.seq, again.record_id) == (thread.id, 1, "500A")
        again.closed_at = NOW
        reopened = outbox.open_thread(s, "salesforce", "sms:a:b", "billing", now=NOW)
        assert (reopened.seq, reopened.record_id, reopened.queue) == (2, None, "billing")


def test_cases_an_earlier_store_opened_are_adopted_as_the_threads_current_cases(store: StateStore) -> None:
    hour = timedelta(hours=1)
    with store.transaction() as s:
        thread = outbox.open_thread(s, "zendesk", "sms:a:b", "support", now=NOW)
        outbox.set_thread_record(s, thread.id, "17")
    states = [CaseState("sms:a:b#1", "17", None, NOW), CaseState("sms:a:b#2", "18", NOW, NOW + hour),
              CaseState("sms:x:y#1", "19", None, NOW), CaseState("sms:x:y#3", "21", NOW + hour, NOW + hour)]
    with store.transaction() as s:
        done = outbox.apply_case_states(s, "zendesk", states, now=NOW + 2 * hour)
        assert done.adopted == 2
        known, unknown = outbox.thread_of(s, "zendesk", "sms:a:b"), outbox.thread_of(s, "zendesk", "sms:x:y")
        assert known is not None and (known.seq, known.record_id, known.closed_at) == (2, "18", NOW)
        assert unknown is not None and (unknown.seq, unknown.record_id, unknown.closed_at) == (3, "21", NOW + hour)
        assert unknown.opened_at == NOW + 2 * hour  # taken on now: agents' replies are read from here
    with store.transaction() as s:  # read again: nothing more to adopt
        assert outbox.apply_case_states(s, "zendesk", states).adopted == 0


def test_case_states_close_and_reopen_the_current_case_only(store: StateStore) -> None:
    hour = timedelta(hours=1)
    with store.transaction() as s:
        thread = outbox.open_thread(s, "zendesk", "sms:a:b", "support", now=NOW)
        outbox.set_thread_record(s, thread.id, "17")
    closed = CaseState("sms:a:b#1", "17", closed_at=NOW + hour, modified_at=NOW + hour)
    with store.transaction() as s:
        # another CRM's state changes nothing of this one's (there, it is a case an earlier store opened)
        assert outbox.apply_case_states(s, "hubspot", [closed]).adopted == 1
        assert outbox.apply_case_states(s, "zendesk", [closed]).changed == 1
        row = outbox.thread_of(s, "zendesk", "sms:a:b")
        assert row is not None and (row.closed_at, row.closed_final, row.state_at) == (NOW + hour, False, NOW + hour)
        window = timedelta(hours=2)
        assert outbox.may_reopen(row, NOW + 3 * hour, window)  # the window's last moment still reopens
        assert outbox.may_reopen(row, NOW, window)  # sent before the close (a backlog): reopens
        assert not outbox.may_reopen(row, NOW + 3 * hour + timedelta(seconds=1), window)
        # crmhub reopens it; the same closed state read again (a page read before the reopen) is stale
        outbox.mark_reopened(s, "zendesk", "sms:a:b", {row.id: NOW + hour})
        assert outbox.apply_case_states(s, "zendesk", [closed]).changed == 0
        assert row.closed_at is None
        # closed for good later: never reopened, whatever the window
        final = CaseState("sms:a:b#1", "17", closed_at=NOW + 2 * hour, modified_at=NOW + 2 * hour, final=True)
        assert outbox.apply_case_states(s, "zendesk", [final]).changed == 1
        assert not outbox.may_reopen(row, NOW + 2 * hour, window)
        # a reopen decided before that newer close does not clear it when it is recorded
        outbox.mark_reopened(s, "zendesk", "sms:a:b", {row.id: NOW + hour})
        assert row.closed_at == NOW + 2 * hour
        # the next message opens case #2, whose state starts afresh
        nxt = outbox.open_thread(s, "zendesk", "sms:a:b", "support", now=NOW)
        assert (nxt.seq, nxt.closed_at, nxt.closed_final, nxt.state_at) == (2, None, False, None)


def test_nul_characters_are_stored_not_fatal(store: StateStore) -> None:
    with store.transaction() as s:
        result = ledger.ingest_page(s, [sms("SMnul", text="bad\x00byte")], now=NOW)
    assert result.stored == 1
    with store.transaction() as s:
        [row] = ledger.unprocessed(s, 10)
        assert row.text == "bad\ufffdbyte"
