"""From ledger to outbox: identity (joins and backfill), contact match, routing, one write per CRM.

Runs over ledger rows not yet processed, in batches, each batch in one
transaction: a crash leaves rows unprocessed, and re-processing them is
harmless (the outbox key is unique per CRM). Daemons sharing a PostgreSQL
store take turns (`crmhub.store.locks`): two processing the same new rows
at once would both create their persons and decisions, and all but one
would fail on the unique keys, and with it that daemon's delivery run.

A batch is set-oriented (issue 13): its items are read in one query; the
persons of known customers, each CRM's contacts and threads, pending new
cases and reply echoes are read for the whole batch at once; routing runs in
memory; decisions, outbox rows and the ledger's person and processed time
are written with one statement each. Only an item that changes the identity
graph (a first message, a new X handle, a claim in its text) takes the
per-item path of `IdentityGraph.person_of`.

Each write gets its priority per CRM: a new case where the conversation has
no open thread there (and no earlier write waiting to open one), else a
follow-up, so a low API budget holds follow-ups back before new cases.
An outbound item that is the sent copy of an agent's reply (its message id is
on a reply row) goes to every CRM except the one the reply came from, whose
write is marked done at once: the agent's comment is already on that case.
An outbound item of a conversation with a reply whose send is unsettled
waits (stays unprocessed) until the reply's message id is known.
A survey answer (`crmhub.sync.surveys.take_answers`) and the sent copy of a
survey question are processed but not routed: no case opens or reopens. The
sent copy of a one-time code (`crmhub.store.codes`) goes into no CRM at all,
and an inbound item carrying a code is checked before the batch's persons
are resolved (`crmhub.sync.link_codes`); one that says nothing but the
right code is not routed either (an agent has nothing to read in it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from crmhub.language import Detection
from crmhub.model import Direction, Interaction, RouteDecision, WritePriority
from crmhub.store import StateStore, codes, graph, ledger, outbox, replies
from crmhub.store.locks import one_at_a_time
from crmhub.store.surveys import is_survey
from crmhub.sync.contacts import ContactMatch, contacts_for
from crmhub.sync.identity import IdentityGraph, IdentityPolicy
from crmhub.sync.link_codes import answer_codes
from crmhub.sync.routing import Router
from crmhub.sync.surveys import take_answers

SURVEY_ANSWER, SURVEY_QUESTION = "survey answer", "survey question"  # decisions of items routed nowhere
CODE_ANSWER = "one-time code answer"


@dataclass(frozen=True)
class _Ready:
    """A batch item that can be routed now, with the reply it echoes (crm, reply ref), if any."""

    interaction_id: int
    item: Interaction
    echo: tuple[str, str] | None


def process_pending(store: StateStore, router: Router, crms: Sequence[str], *, now: datetime,
                    batch_size: int = 500, identity: IdentityPolicy = IdentityPolicy(),
                    reopen_window: timedelta = outbox.DEFAULT_REOPEN_WINDOW) -> int:
    """Process every unprocessed ledger row; returns how many were processed.

    `reopen_window` is `threads.reopen_window`: a message that will reopen a
    case closed that recently counts, for routing, as one with a case open.
    """
    done = 0
    reopening: set[int] = set()  # threads an earlier message of this run reopens
    while True:
        with store.transaction() as session:
            one_at_a_time(session, "route")
            rows = ledger.unprocessed_items(session, batch_size)
            # In the order they happened (a poll may store newest first), so a
            # conversation's first message is the one that opens its case.
            rows.sort(key=lambda entry: (entry[1].occurred_at, entry[0]))
            ready = _ready(session, rows)
            if ready:
                _route_batch(session, ready, router, crms, now=now, identity=identity,
                             reopen_window=reopen_window, reopening=reopening)
        waiting = len(rows) - len(ready)
        done += len(ready)
        if len(rows) < batch_size or waiting == len(rows):
            return done


def _ready(session: Session, rows: Sequence[tuple[int, Interaction]]) -> list[_Ready]:
    """The rows that can be routed now: an outbound item that may be the sent copy of a reply not recorded
    yet (its conversation has a reply being sent) waits."""
    outbound = [(item.channel.value, item.external_id) for _, item in rows if item.direction is Direction.OUTBOUND]
    echoes = replies.echoes_of(session, outbound)
    unsettled = replies.unsettled_of(session, [item.conversation_key for _, item in rows
                                               if item.direction is Direction.OUTBOUND])
    ready = []
    for interaction_id, item in rows:
        echo = None
        if item.direction is Direction.OUTBOUND:
            echo = echoes.get((item.channel.value, item.external_id))
            if echo is None and item.conversation_key in unsettled:
                continue
        ready.append(_Ready(interaction_id, item, echo))
    return ready


def _unrouted_reason(entry: _Ready, answers: set[int], bare_codes: set[int]) -> str:
    if entry.interaction_id in bare_codes:
        return CODE_ANSWER
    return SURVEY_ANSWER if entry.interaction_id in answers else SURVEY_QUESTION


def _route_batch(session: Session, batch: Sequence[_Ready], router: Router, crms: Sequence[str], *,
                 now: datetime, identity: IdentityPolicy, reopen_window: timedelta, reopening: set[int]) -> None:
    """Persons, contacts, threads and routing for a batch in memory; its writes in a few statements."""
    items = [(entry.interaction_id, entry.item) for entry in batch]
    bare_codes = answer_codes(session, items, policy=identity, crms=crms, now=now)  # a proven claim joins first
    people = IdentityGraph(session, crms, identity, now)
    persons = people.persons_of(items)
    answers = take_answers(session, items, crms, now=now)
    # An answer (to a survey, or a bare one-time code) opens no case; a survey question's own copy is crmhub's
    # text on a closed case, written nowhere. Each keeps a decision naming why (`crmhub explain`), with no target.
    unrouted = [(entry.interaction_id, RouteDecision(_unrouted_reason(entry, answers, bare_codes), {}, ()))
                for entry in batch if entry.interaction_id in answers or entry.interaction_id in bare_codes
                or (entry.echo is not None and is_survey(entry.echo[1]))]
    skipped = {interaction_id for interaction_id, _ in unrouted}
    batch = [entry for entry in batch if entry.interaction_id not in skipped]
    conversations = {entry.item.conversation_key for entry in batch}
    contacts: dict[str, dict[int, ContactMatch | None]] = {}
    threads: dict[str, dict[str, Any]] = {}
    opening: dict[str, set[str]] = {}  # per CRM: conversations with a new-case write pending (or queued now)
    held = graph.identities_of_many(session, set(persons.values()))  # once for every CRM: linking changes none
    for crm in crms:
        contacts[crm] = contacts_for(session, set(persons.values()), crm, now=now, blocklist=identity.blocklist,
                                     on_linked=people.relink_many, identities=held)
        threads[crm] = outbox.threads_of(session, crm, conversations)
        opening[crm] = outbox.cases_pending(session, crm, conversations)
    decisions: list[tuple[int, RouteDecision]] = unrouted
    writes: list[dict[str, Any]] = []
    routed: list[tuple[_Ready, dict[str, Any], bool]] = []
    for entry in batch:
        item, person = entry.item, persons[entry.interaction_id]
        fields: dict[str, Any] = {}
        case_open = False
        priority: dict[str, WritePriority] = {}
        for crm in crms:
            match = contacts[crm][person]
            if match is not None:
                fields = {**match.fields, **fields}  # the first CRM's value wins
            thread = threads[crm].get(item.conversation_key)
            reopens = outbox.reopens(thread, item.occurred_at, reopen_window, reopening)
            if reopens and thread is not None:
                reopening.add(thread.id)  # what follows it threads onto it too
            is_open = reopens or (thread is not None and thread.closed_at is None)
            case_open = case_open or is_open
            if is_open or item.conversation_key in opening[crm]:
                priority[crm] = WritePriority.FOLLOW_UP
            else:
                priority[crm] = WritePriority.NEW_CASE
                opening[crm].add(item.conversation_key)  # this write opens it: the next ones follow up
        routed.append((entry, fields, case_open))
        if entry.echo is not None and entry.echo[0] == codes.SENDER:
            continue  # the sent copy of a one-time code: it goes into no CRM's history
        writes += outbox.pending_writes(entry.interaction_id, crms, item.key, now=now, priority=priority)
    detected = _languages(session, router, routed)
    for i, (entry, fields, case_open) in enumerate(routed):
        language = detected[i] if detected is not None else None
        decisions.append((entry.interaction_id, router.decide(entry.item, fields, case_open=case_open,
                                                              language=language)))
    outbox.save_decisions(session, decisions, now=now)
    outbox.enqueue_many(session, writes)
    # The agent's reply is on that CRM's case already: its echo is settled there, not written. A reply
    # written outside the CRM (the agents' panel) is history that CRM needs like every other; a one-time
    # code's echo has no write at all.
    outbox.settle_replies(session, [(entry.echo[0], entry.item.key, entry.echo[1]) for entry in batch
                                    if entry.echo is not None and entry.echo[0] != codes.SENDER
                                    and replies.written_in_crm(entry.echo[1])], now=now)
    ledger.mark_processed(session, persons, now=now, languages=None if detected is None else {
        entry.interaction_id: found.language for (entry, _, _), found in zip(routed, detected, strict=True)})


def _languages(session: Session, router: Router, routed: Sequence[tuple[_Ready, dict[str, Any], bool]]
               ) -> list[Detection] | None:
    """Each item's language for the batch (None when detection is off), its conversation's earlier one read once."""
    if router.detector is None:
        return None
    earlier = ledger.conversation_languages(session, {entry.item.conversation_key for entry, _, _ in routed})
    return router.languages([entry.item for entry, _, _ in routed], [fields for _, fields, _ in routed], earlier)
