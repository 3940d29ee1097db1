"""Joining identities into persons, and what a join means for the CRM records.

Facts that join two identities: a CRM record holding both (the contact
mirror), an X account's handle, and a claim someone confirmed. An identity a
customer states in a message (`statements`) is only a claim: by default it
becomes a link suggestion (`crmhub links`) for an agent or admin to confirm,
since anyone can write anyone's address (`statements: confirm_by_code` also
sends a one-time code to a claimed phone or email, over the channel that
reaches it); the admin may ignore claims of a kind, or join them unchecked
(`statements: join`). When a fact joins two persons, the older person keeps
everything and every interaction of both is re-pointed onto the person's
primary record in each CRM (the backfill): the outbox rows already delivered
elsewhere come due again as relinks, which the connectors apply as upserts on
crmhub's keys, so each interaction stays exactly once per CRM.

Two records of one CRM that turn out to be one person are never merged: the
conflict is flagged (`crmhub conflicts`) and writes go to the primary record.
Blocked (shared) identities never join anything, and a person never grows
past `max_per_kind` identities of one kind: such a join is flagged instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import phonenumbers
import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crmhub.model import (
    CodeRoute, Direction, Identity, IdentityKind, Interaction, MirrorRecord, OutboxStatus, WritePriority,
)
from crmhub.store import codes, conflicts, graph, linklog, links, outbox
from crmhub.store.codes import CodeRules
from crmhub.store.linklog import DAEMON, Action, Evidence
from crmhub.store.schema import CrmLinkRow, IdentityRow, LedgerRow, OutboxRow
from crmhub.store.sets import among
from crmhub.sync.blocklist import Blocklist
from crmhub.sync.contacts import contacts_for
from crmhub.sync.statements import may_state, stated_identities

log = structlog.get_logger("crmhub.identity")
MAX_CLOSURE_ROUNDS = 10  # a chain of records longer than this is not followed in one go
UNCHECKED = f"{DAEMON} (statements: join)"  # who joins a claim an admin set to be taken unchecked


class OnStatement(StrEnum):
    """What an identity a customer states in a message does (identities.yaml `statements`)."""

    SUGGEST = "suggest"  # a link suggestion for a person to confirm
    CONFIRM_BY_CODE = "confirm_by_code"  # a suggestion, and a one-time code sent over the claimed channel
    IGNORE = "ignore"
    JOIN = "join"  # joined unchecked: the text is taken as proof


@dataclass(frozen=True)
class StatementPolicy:
    """`statements` per identity kind a message can state."""

    phone: OnStatement = OnStatement.SUGGEST
    email: OnStatement = OnStatement.SUGGEST
    x_handle: OnStatement = OnStatement.SUGGEST

    def of(self, kind: IdentityKind) -> OnStatement:
        return OnStatement(getattr(self, kind.value, OnStatement.IGNORE))

    @property
    def sends_codes(self) -> bool:
        """Whether a claim may get a one-time code (so answers to codes are looked for at routing)."""
        return any(self.of(kind) is OnStatement.CONFIRM_BY_CODE for kind in IdentityKind)

    @property
    def reads(self) -> bool:
        """Whether any statement counts at all (else messages are not parsed)."""
        return any(self.of(kind) is not OnStatement.IGNORE for kind in IdentityKind)


@dataclass(frozen=True)
class CodePolicy:
    """How `confirm_by_code` sends its codes: the rules, and per identity kind the route that reaches a claimed
    identity of that kind (offered by the enabled channel modules; a kind without one gets no code)."""

    rules: CodeRules = CodeRules()
    routes: Mapping[IdentityKind, CodeRoute] = field(default_factory=dict)


@dataclass(frozen=True)
class IdentityPolicy:
    """The admin's identity rules (identities.yaml) as the engine needs them."""

    blocklist: Blocklist = Blocklist()
    max_per_kind: int = 5
    statements: StatementPolicy = StatementPolicy()
    default_region: str = "US"
    other_regions: tuple[str, ...] = ()
    own: frozenset[Identity] = frozenset()  # our numbers and accounts: never a customer's
    codes: CodePolicy = CodePolicy()


@dataclass
class IdentityGraph:
    """The identity graph within one transaction: resolves items to persons, joins, relinks."""

    session: Session
    crms: Sequence[str]
    policy: IdentityPolicy
    now: datetime
    merges: int = 0
    _grown: set[int] = field(default_factory=set)  # persons with new identities: they may match more records
    _deferring: bool = False  # `persons_of` links grown persons once, at the end of its batch

    # ---- entry points ----------------------------------------------------
    def person_of(self, item: Interaction, *, interaction_id: int | None = None,
                  claims: Sequence[Identity] | None = None) -> int:
        """The person of `item`'s customer, after joining every fact known about them.

        Identities the message claims become link suggestions (or joins, or
        nothing, as `statements` says); `interaction_id` is `item`'s ledger row
        (looked up when not given), the evidence a suggestion points to;
        `claims` what the message claims when the caller has read it already.
        """
        customer = item.customer
        person = graph.person_for(self.session, customer, now=self.now)
        if self.policy.blocklist.blocks(customer):
            return person  # a switchboard number joins nobody
        if (customer.kind is IdentityKind.X and customer.display
                and graph.follow_handle(self.session, customer, item.occurred_at)):  # the handle X shows now
            person = self.join(person, [Identity(IdentityKind.X_HANDLE, customer.display, customer.display)],
                               evidence=Evidence.CHANNEL, actor=DAEMON)
        claims = self._claims(item) if claims is None else claims
        person = self.join(person, [c for c in claims if self.policy.statements.of(c.kind) is OnStatement.JOIN],
                           evidence=Evidence.STATEMENT, actor=UNCHECKED)
        person = self.close_over_mirror(person)
        suggested = [c for c in claims
                     if self.policy.statements.of(c.kind) in (OnStatement.SUGGEST, OnStatement.CONFIRM_BY_CODE)]
        if suggested:
            self._suggest(item, person, suggested, interaction_id)
        self._link_grown()
        return person

    def persons_of(self, items: Sequence[tuple[int, Interaction]]) -> dict[int, int]:
        """`person_of` for a batch of (ledger id, item), in order; returns ledger id -> person.

        Most items come from a customer already known, claiming nothing new;
        most of the others from a customer no CRM record knows either. Both
        are settled for the whole batch in a few statements, and only the
        rest (a CRM's contact writing for the first time, a new X handle, a
        claim in the text) go through `person_of` one by one. The persons are
        read again at the end, so an item whose person a later item merged
        away gets the survivor.
        """
        claims = {interaction_id: self._claims(item) for interaction_id, item in items}
        facts = [fact for _, item in items for fact in self._simple_facts(item)]
        held, undisplayed = self._held(facts)
        held.update(self._create_plain(items, held, claims))
        self._deferring = True
        try:
            for interaction_id, item in items:
                customer = item.customer
                person = held.get((customer.kind, customer.value))
                if (person is not None and not (customer.display and (customer.kind, customer.value) in undisplayed)
                        and self._nothing_new(item, person, held, claims[interaction_id])):
                    continue
                person = self.person_of(item, interaction_id=interaction_id, claims=claims[interaction_id])
                held[(customer.kind, customer.value)] = person
        finally:
            self._deferring = False
        self._link_grown()
        final = self._holders([item.customer for _, item in items])
        return {interaction_id: final[(item.customer.kind, item.customer.value)] for interaction_id, item in items}

    def _create_plain(self, items: Sequence[tuple[int, Interaction]], held: Mapping[tuple[IdentityKind, str], int],
                      claims: Mapping[int, list[Identity]]) -> dict[tuple[IdentityKind, str], int]:
        """Persons for first-time customers `person_of` would create and leave alone, created at once.

        That is a customer whose identity nobody holds, that no CRM record
        holds (else the record's other identities join them), that carries no
        X handle to join, and that no message of the batch claims (a claim is
        settled in the order the messages came). A blocked value always is:
        it joins nothing.
        """
        claimed = {(c.kind, c.value) for found in claims.values() for c in found}
        fresh = {}
        for interaction_id, item in items:
            customer = item.customer
            key = (customer.kind, customer.value)
            if key in held or key in claimed or claims[interaction_id]:
                continue
            if self.policy.blocklist.blocks(customer) or len(self._simple_facts(item)) == 1:
                fresh.setdefault(key, customer)
        blocked = self.policy.blocklist.blocks
        mirrored = graph.held_by_mirror(self.session, self.crms, [c for c in fresh.values() if not blocked(c)])
        known = [c for c in fresh.values() if not blocked(c) and (c.kind.value, c.value) in mirrored]
        plain = [c for c in fresh.values() if blocked(c) or (c.kind.value, c.value) not in mirrored]
        created = graph.new_persons(self.session, plain, now=self.now)
        created.update(self._create_mirrored(known))
        return {(IdentityKind(kind), value): person for (kind, value), person in created.items()}

    def _create_mirrored(self, customers: Sequence[Identity]) -> dict[tuple[str, str], int]:
        """First-time customers a CRM record already holds: persons created at once, with what their records hold.

        The closure `close_over_mirror` follows one person at a time (a record's
        identities join the person, and those may reach further records), done
        here for the batch round by round in a few statements. A person whose
        closure meets someone else (an identity another person holds, a record
        two of the new persons reach, the identity limit) is left out of the
        answer: `person_of` then finishes its closure from where it stands,
        joining and flagging as it always does.
        """
        persons = graph.new_persons(self.session, customers, now=self.now)
        owner = dict(persons)  # (kind, value) -> the new person holding it
        owned: dict[int, list[Identity]] = {persons[(c.kind.value, c.value)]: [c] for c in customers}
        unsettled: set[int] = set()
        frontier, seen = set(persons.values()), set()
        for _ in range(MAX_CLOSURE_ROUNDS):
            if not frontier:
                break
            reaching: dict[int, set[int]] = {}  # record -> the persons reaching it this round
            lookups = [i for p in frontier for i in self.policy.blocklist.usable(owned[p])]
            for record, kind, value in graph.mirror_records_holding(self.session, self.crms, lookups):
                if record not in seen and owner.get((kind, value)) in frontier:
                    reaching.setdefault(record, set()).add(owner[(kind, value)])
            seen |= set(reaching)
            facts: dict[int, list[Identity]] = {}
            for record, identities in graph.mirror_identities_many(self.session, list(reaching)).items():
                if len(reaching[record]) > 1:
                    unsettled |= reaching[record]
                    continue
                person = next(iter(reaching[record]))
                facts.setdefault(person, []).extend(self.policy.blocklist.usable(identities))
            held_elsewhere = self._holders([i for found in facts.values() for i in found])
            added: list[tuple[int, Identity]] = []
            for person, found in facts.items():
                fresh_facts = list({(i.kind, i.value): i for i in found
                                    if owner.get((i.kind.value, i.value)) != person}.values())
                if any((i.kind, i.value) in held_elsewhere or (i.kind.value, i.value) in owner for i in fresh_facts):
                    unsettled.add(person)  # someone else holds it: a join, person_of's
                    continue
                kinds = [i.kind for i in owned[person] + fresh_facts]
                if any(kinds.count(kind) > self.policy.max_per_kind for kind in set(kinds)):
                    unsettled.add(person)  # past the limit: person_of flags it
                    continue
                for identity in fresh_facts:
                    owner[(identity.kind.value, identity.value)] = person
                    owned[person].append(identity)
                    added.append((person, identity))
            graph.add_identities(self.session, [(p, i) for p, i in added if p not in unsettled])
            frontier = {p for p, _ in added} - unsettled
            self._grown |= frontier
        if frontier:  # the closure goes further than `person_of` follows in one go: let it decide
            unsettled |= frontier
        return {key: person for key, person in persons.items() if person not in unsettled}

    def _simple_facts(self, item: Interaction) -> list[Identity]:
        """The customer's identity and the X handle their account shows (what `person_of` always looks at)."""
        customer = item.customer
        if customer.kind is IdentityKind.X and customer.display:
            return [customer, Identity(IdentityKind.X_HANDLE, customer.display, customer.display)]
        return [customer]

    def _nothing_new(self, item: Interaction, person: int, held: Mapping[tuple[IdentityKind, str], int],
                     claims: Sequence[Identity]) -> bool:
        """Whether `person_of` would find nothing to join or suggest for the item of a known customer."""
        if self.policy.blocklist.blocks(item.customer):
            return True
        facts = self.policy.blocklist.usable(self._simple_facts(item)[1:])
        return all(held.get((f.kind, f.value)) == person for f in facts) and not claims

    def confirm(self, sender: Identity, claimed: Identity, *, by: str, evidence: Evidence = Evidence.ADMIN) -> int:
        """A claim a person checked: `sender`'s person takes `claimed`, merging whoever holds it (with backfill).

        Returns the sender's person afterwards; it does not hold `claimed` when
        the join was refused (a blocked value, or the identity limit, flagged).
        The join is logged with `evidence`, what confirmed the statement (an admin, an agent, a code), made by `by`.
        """
        person = graph.person_for(self.session, sender, now=self.now)
        person = self.close_over_mirror(self.join(person, [claimed], evidence=evidence, actor=by))
        self._link_grown()
        return person

    def absorb_records(self, records: Sequence[MirrorRecord]) -> None:
        """Mirror records just refreshed: each joins the persons holding its identities; a gone one unlinks.

        A record merged away in the CRM (`merged_into`) hands its link to the survivor.
        """
        for record in records:
            if record.deleted:
                self._unlink(record.crm, record.record_id, survivor=record.merged_into)
        usable = [i for r in records if not r.deleted for i in self.policy.blocklist.usable(list(r.identities))]
        if not usable:
            return
        held = self._holders(usable)
        linked = self._linked_persons(records)
        unchanged: set[tuple[int, str]] = set()
        for record in records:
            if record.deleted:
                continue
            mine = self.policy.blocklist.usable(list(record.identities))
            persons = sorted({held[(i.kind, i.value)] for i in mine if (i.kind, i.value) in held})
            if not persons:
                continue
            if persons == [linked.get(record.record_id)] and all((i.kind, i.value) in held for i in mine):
                unchanged.add((persons[0], record.crm))  # e.g. one crmhub created, read back: nothing to join
                continue
            person = persons[0]
            for other in persons[1:]:
                person = self.merge(person, other, why=f"{record.crm} record {record.record_id}",
                                    evidence=Evidence.CRM_FIELD, actor=DAEMON)
            person = self.close_over_mirror(self.join(person, mine, evidence=Evidence.CRM_FIELD, actor=DAEMON,
                                                      record=f"{record.crm} record {record.record_id}"))
            if graph.links_of(self.session, person, record.crm):  # a further record of a linked person
                graph.add_link(self.session, person, record.crm, record.object_type, record.record_id, now=self.now)
                self.relink(person, record.crm)
        for crm in sorted({crm for _, crm in unchanged}):  # a write that landed on it while a join moved the person
            self.relink_many(sorted(person for person, c in unchanged if c == crm), crm)
        self._link_grown()

    # ---- joining ---------------------------------------------------------
    def join(self, person: int, facts: Sequence[Identity], *, evidence: Evidence, actor: str,
             record: str = "") -> int:
        """Add `facts` to `person`; a fact another person holds merges the two. Returns the surviving person.

        A merge is logged with `evidence` and `actor`, about the fact (and the CRM `record` holding it, if any).
        """
        for fact in self.policy.blocklist.usable(list(facts)):
            holder = graph.holder_of(self.session, fact)
            if holder is None and evidence in linklog.CLAIM_EVIDENCE:
                # A claimed identity nobody holds yet becomes a person of its own that joins by a logged merge:
                # the link log records the claim's join like any other, and `links undo` can take it off again.
                holder = graph.person_for(self.session, fact, now=self.now)
            if holder is None:
                if graph.count_of_kind(self.session, person, fact.kind) >= self.policy.max_per_kind:
                    self._flag_limit(person, fact.kind)
                    continue
                graph.add_identity(self.session, person, fact)
                self._grown.add(person)
            elif holder != person:
                why = f"{fact.kind.value}:{fact.value}" + (f" in {record}" if record else "")
                person = self.merge(person, holder, why=why, evidence=evidence, actor=actor)
        return person

    def close_over_mirror(self, person: int) -> int:
        """Follow CRM records: whatever a record holding one of the person's identities holds is theirs too."""
        seen: set[int] = set()
        for _ in range(MAX_CLOSURE_ROUNDS):
            identities = self.policy.blocklist.usable(graph.identities_of(self.session, person))
            rows = [r for r in graph.mirror_holding(self.session, self.crms, identities) if r.id not in seen]
            if not rows:
                break
            for row in rows:
                seen.add(row.id)
                person = self.join(person, graph.mirror_identities(self.session, row.id), evidence=Evidence.CRM_FIELD,
                                   actor=DAEMON, record=f"{row.crm} record {row.record_id}")
        return person

    def merge(self, a: int, b: int, *, why: str, evidence: Evidence, actor: str) -> int:
        """Join persons `a` and `b` into the older one and backfill; refused (and flagged) past the identity limit.

        The join goes into the link log with `evidence`, `actor` and `why` (what it concerns).
        """
        keep, gone = min(a, b), max(a, b)
        if keep == gone:
            return keep
        combined = graph.identities_of(self.session, keep) + graph.identities_of(self.session, gone)
        for kind in IdentityKind:
            if sum(1 for i in combined if i.kind is kind) > self.policy.max_per_kind:
                self._flag_limit(keep, kind, other=gone)
                return a
        graph.merge_persons(self.session, keep, gone, evidence=evidence, actor=actor, now=self.now, concerning=why)
        self._grown.discard(gone)
        self._grown.add(keep)
        self.merges += 1
        log.info("persons joined", person=keep, joined=gone, evidence=str(evidence))
        for crm in self.crms:
            self.relink(keep, crm)
        return keep

    # ---- consequences for the CRMs --------------------------------------
    def relink(self, person: int, crm: str) -> None:
        """Re-point the person's delivered interactions onto their primary record in `crm`; flag several records."""
        self.relink_many([person], crm)

    def relink_many(self, persons: Sequence[int], crm: str) -> None:
        """`relink` for many persons: a few statements however many (first links of a batch's customers)."""
        links = graph.links_of_many(self.session, persons, crm)
        primary: dict[int, str] = {}
        for person, found in sorted(links.items()):
            if len(found) > 1:
                records = [link.record_id for link in found]
                conflicts.flag(self.session, crm, person, records,
                               f"{len(records)} {crm} records belong to one customer; crmhub writes to {records[0]}",
                               now=self.now)
            primary[person] = found[0].record_id
        if not primary:
            return
        # By the persons' ledger rows (`ix_ledger_person`), then their writes (`ix_outbox_interaction_id`):
        # their history, never a slice of every done row of the CRM.
        done = self.session.execute(
            select(OutboxRow.id, LedgerRow.person_id, OutboxRow.contact_ref, OutboxRow.result_ref)
            .join(LedgerRow, LedgerRow.id == OutboxRow.interaction_id)
            .where(among(LedgerRow.person_id, sorted(primary)), OutboxRow.crm == crm,
                   OutboxRow.status == OutboxStatus.DONE.value))
        # An agent's reply (its echo settled by the reply itself) stays where the agent wrote it: never re-sent.
        moved = [row_id for row_id, person, contact_ref, result_ref in done
                 if contact_ref != primary[person] and not outbox.settled_by_reply(result_ref)]
        if moved:
            self.session.execute(
                update(OutboxRow)
                .where(among(OutboxRow.id, moved))
                .values(status=OutboxStatus.PENDING.value, relink=True, attempts=0, claims=0,
                        next_attempt_at=self.now, done_at=None, priority=int(WritePriority.BACKFILL))  # after new items, within the budget
                .execution_options(synchronize_session=False))

    def _link_grown(self) -> None:
        """A person with new identities may now match records in any CRM: link them (and backfill onto them).

        Within `persons_of` this waits for the end of the batch, to link every grown person at once.
        """
        if self._deferring:
            return
        grown, self._grown = sorted(self._grown), set()
        if grown:
            for crm in self.crms:
                contacts_for(self.session, grown, crm, now=self.now, blocklist=self.policy.blocklist,
                             on_linked=self.relink_many)

    def _unlink(self, crm: str, record_id: str, *, survivor: str | None = None) -> None:
        """A record gone from the CRM (deleted, or merged there by an admin): its person moves to what is left.

        A merge's `survivor` takes over the link (its person, if another one
        holds it already, joins this one: the CRM says they are one). The
        conflict flagged for the person's records closes itself once at most
        one is left, saying why; delivered history is re-pointed (`relink`), and
        pending writes follow the links when they are delivered.
        """
        link = self.session.scalar(select(CrmLinkRow).where(CrmLinkRow.crm == crm, CrmLinkRow.record_id == record_id))
        if link is None:
            return
        person, object_type, preferred = link.person_id, link.object_type, link.preferred
        self.session.delete(link)
        self.session.flush()
        evidence = Evidence.CRM_MERGE if survivor is not None else Evidence.CRM_DELETE
        linklog.record(self.session, Action.UNLINK_RECORD, evidence=evidence, actor=DAEMON, now=self.now,
                       kept=person, concerning=f"{crm} record {record_id}")
        if survivor is not None:
            holder = graph.linked_persons(self.session, crm, [survivor]).get(survivor)
            if holder is None:
                graph.add_link(self.session, person, crm, object_type, survivor, now=self.now)
                linklog.record(self.session, Action.LINK_RECORD, evidence=evidence, actor=DAEMON, now=self.now,
                               kept=person, concerning=f"{crm} record {survivor}")
            elif holder != person:
                person = self.merge(person, holder, why=f"{crm} record {record_id} merged into {survivor}",
                                    evidence=Evidence.CRM_MERGE, actor=DAEMON)
            if preferred:  # the admin's pick is gone into the survivor: the pick moves with it
                self.session.execute(update(CrmLinkRow).where(CrmLinkRow.crm == crm, CrmLinkRow.record_id == survivor)
                                     .values(preferred=True))
        remaining = graph.links_of(self.session, person, crm)
        conflict = conflicts.of(self.session, crm, person)
        if conflict is not None and conflict.resolved_at is None and len(remaining) <= 1:
            fate = f"merged into {survivor}" if survivor else "deleted"
            target = f"; crmhub writes to {remaining[0].record_id}" if remaining else ""
            conflict.resolved_at, conflict.resolution = self.now, f"{record_id} {fate} in {crm}{target}"
        log.info("crm record gone", crm=crm, record=record_id, survivor=survivor, person=person)
        self.relink(person, crm)

    def _flag_limit(self, person: int, kind: IdentityKind, *, other: int | None = None) -> None:
        what = f"joining person {other}" if other is not None else "another identity"
        conflicts.flag(self.session, "crmhub", person, [f"person:{person}", *([f"person:{other}"] if other else [])],
                       f"{what} would give more than {self.policy.max_per_kind} {kind.value} identities; "
                       "not joined (raise max_identities_per_kind in identities.yaml or block the shared value)",
                       now=self.now)

    # ---- claims in messages ------------------------------------------------
    def _claims(self, item: Interaction) -> list[Identity]:
        """What an inbound message claims, of the kinds `statements` does not ignore."""
        rules = self.policy.statements
        if item.direction is not Direction.INBOUND or not may_state(item.text) or not rules.reads:
            return []
        stated = stated_identities(item.text, regions=self._regions(item.customer), own=self._own(item),
                                   known=lambda kind, values: graph.known_values(self.session, kind, values,
                                                                                  self.crms))
        return [i for i in self.policy.blocklist.usable(stated) if rules.of(i.kind) is not OnStatement.IGNORE]

    def _suggest(self, item: Interaction, person: int, claims: Sequence[Identity], interaction_id: int | None) -> None:
        """Store each claim the person does not hold yet as a suggestion (once per sender and claim)."""
        if interaction_id is None:
            interaction_id = self.session.scalar(select(LedgerRow.id).where(
                LedgerRow.channel == item.channel.value, LedgerRow.external_id == item.external_id))
            if interaction_id is None:  # not from the ledger: no evidence to point to
                return
        for claim in claims:
            holder = graph.holder_of(self.session, claim)
            if holder == person:
                continue
            row = links.suggest(self.session, interaction_id=interaction_id, sender=item.customer,
                                sender_person=person, claimed=claim, holder=holder, now=self.now)
            if row.interaction_id == interaction_id and row.status == links.LinkStatus.PENDING:
                log.info("link suggested", suggestion=row.id, person=person, holder=holder,
                         claimed_kind=claim.kind.value)
            if (row.status == links.LinkStatus.PENDING
                    and self.policy.statements.of(claim.kind) is OnStatement.CONFIRM_BY_CODE):
                self._send_code(row.id, claim, item)

    def _send_code(self, suggestion_id: int, claim: Identity, item: Interaction) -> None:
        """Queue a one-time code to a claimed identity over the route that reaches its kind, if any.

        It goes from the address the claim came in on when the claim came in on
        the route's channel (the number the customer texted), else from the
        route's own (our first number, the support mailbox). A kind no channel
        reaches (an X handle: a DM needs the account id) stays a suggestion.
        """
        route = self.policy.codes.routes.get(claim.kind)
        if route is None:
            return
        ours = (item.recipient if item.channel is route.channel and item.recipient.kind is route.ours.kind
                else route.ours)
        if codes.issue(self.session, suggestion_id=suggestion_id, target=claim, route=route, ours=ours,
                       rules=self.policy.codes.rules, now=self.now):
            log.info("link code queued", suggestion=suggestion_id, channel=route.channel.value)

    # ---- helpers ---------------------------------------------------------
    def _holders(self, identities: Sequence[Identity]) -> dict[tuple[IdentityKind, str], int]:
        return self._held(identities)[0]

    def _held(self, identities: Sequence[Identity]
              ) -> tuple[dict[tuple[IdentityKind, str], int], set[tuple[IdentityKind, str]]]:
        """Who holds each of `identities`, and which held ones have no display name stored yet (`person_of`
        stores the one seen); one query."""
        wanted = {(i.kind.value, i.value) for i in identities}
        # kind IN and value IN: both columns of the unique key bound (a row-value IN is no index lookup on SQLite)
        rows = self.session.execute(select(IdentityRow.kind, IdentityRow.value, IdentityRow.person_id,
                                           IdentityRow.display)
                                    .where(among(IdentityRow.kind, sorted({k for k, _ in wanted})),
                                           among(IdentityRow.value, sorted({v for _, v in wanted}))))
        holders: dict[tuple[IdentityKind, str], int] = {}
        undisplayed: set[tuple[IdentityKind, str]] = set()
        for kind, value, person, display in rows:
            if (kind, value) in wanted:
                holders[(IdentityKind(kind), value)] = person
                if not display:
                    undisplayed.add((IdentityKind(kind), value))
        return holders, undisplayed

    def _linked_persons(self, records: Sequence[MirrorRecord]) -> dict[str, int]:
        """The person each of these records (of one CRM page) is linked to, where it is: record id -> person."""
        linked: dict[str, int] = {}
        for crm in {record.crm for record in records}:
            linked.update(graph.linked_persons(self.session, crm, [r.record_id for r in records if r.crm == crm]))
        return linked

    def _regions(self, customer: Identity) -> list[str]:
        regions = [self.policy.default_region, *self.policy.other_regions]
        if customer.kind is IdentityKind.PHONE:
            try:
                region = phonenumbers.region_code_for_number(phonenumbers.parse(customer.value))
            except phonenumbers.NumberParseException:
                region = None
            if region:
                regions.insert(0, region)
        return regions

    def _own(self, item: Interaction) -> frozenset[Identity]:
        ours = item.recipient if item.direction is Direction.INBOUND else item.sender
        extra = {ours}
        if ours.kind is IdentityKind.X and ours.display:
            extra.add(Identity(IdentityKind.X_HANDLE, ours.display))
        return self.policy.own | extra
