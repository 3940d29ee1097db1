"""`crmhub explain`: why an interaction went where it went.

Shows the interaction (never its text), the person and their CRM links, the
stored routing decision (the winning rule and why each rule before it did not
match), the target per CRM and the outbox state per CRM. Reads only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmhub.model import Channel
from crmhub.ops import OpsError
from crmhub.ops.deadletters import without_text
from crmhub.store.schema import CrmLinkRow, IdentityRow, LedgerRow, OutboxRow, PersonRow, RouteDecisionRow

CHANNELS = tuple(c.value for c in Channel)


def find_interaction(session: Session, ref: str) -> LedgerRow:
    """The ledger row named by a ledger id (`12`) or crmhub's key (`sms:SM...`)."""
    ref = ref.strip()
    row: LedgerRow | None = None
    if ref.isdigit():
        row = session.get(LedgerRow, int(ref))
    elif ":" in ref:
        channel, external_id = ref.split(":", 1)
        if channel not in CHANNELS:
            raise OpsError(f"unknown channel {channel!r} in {ref!r}; channels are {', '.join(CHANNELS)}")
        row = session.scalar(select(LedgerRow).where(LedgerRow.channel == channel,
                                                     LedgerRow.external_id == external_id))
    else:
        raise OpsError(f"{ref!r} is neither a ledger id nor channel:external_id (e.g. sms:SM...)")
    if row is None:
        raise OpsError(f"no interaction {ref!r} in the ledger; give a ledger id or channel:external_id "
                       "as `crmhub explain` expects (e.g. 12 or sms:SM...)")
    return row


@dataclass
class Explanation:
    """Everything `crmhub explain` shows about one interaction."""

    interaction: dict[str, Any]
    person: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    outbox: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report, one line each (no message text in any of them)."""
        i = self.interaction
        out = [f"Interaction {i['id']} ({i['key']})",
               f"  channel: {i['channel']}",
               f"  direction: {i['direction']}",
               f"  when: {i['occurred_at']}",
               f"  customer: {i['customer']}",
               f"  conversation: {i['conversation']}",
               f"  language: {i['language'] or ('unknown' if i['processed_at'] else 'not detected yet')}"]
        if i["media"]:
            out.append(f"  media: {i['media']} item(s)")
        if i["call"]:
            out.append(f"  call: {i['call']}")
        out.append(f"  ingested: {i['ingested_at']}; routed: {i['processed_at'] or 'not yet'}")
        if self.person is None:
            out.append("Person: none yet (the next sync matches the customer)")
        else:
            p = self.person
            merged = f" (merged into person {p['merged_into']})" if p["merged_into"] else ""
            out.append(f"Person {p['id']}{merged}")
            out.extend(f"  identity: {identity}" for identity in p["identities"])
            out.extend(f"  {link['crm']}: {link['object_type']} {link['record_id']}" for link in p["links"])
            if not p["links"]:
                out.append("  no CRM record linked yet")
        if self.decision is None:
            out.append("Routing: not routed yet (the next sync routes it)")
        else:
            d = self.decision
            out.append(f"Routing: rule '{d['rule']}' (decided {d['decided_at']})")
            out.extend(f"  tried {name}: {reason}" for name, reason in d["tried"])
            if not d["tried"]:
                out.append("  first rule tried matched" if d["rule"] != "default" else "  no rules to try")
            out.extend(f"  target {crm}: {target}" for crm, target in d["targets"].items())
        if not self.outbox:
            out.append("Outbox: no CRM write queued yet")
        else:
            out.append("Outbox")
            for o in self.outbox:
                record = f"record {o['record_id']}" if o["record_id"] else "no record"
                error = f"last error: {o['last_error']}" if o["last_error"] else "no error"
                out.append(f"  {o['crm']}: {o['status']}, {o['attempts']} attempt(s), {record}, {error}")
        return out


def explain(session: Session, ref: str) -> Explanation:
    """The explanation of the interaction `ref` (ledger id or channel:external_id)."""
    row = find_interaction(session, ref)
    customer = ((row.sender_kind, row.sender_value, row.sender_display) if row.direction == "inbound"
                else (row.recipient_kind, row.recipient_value, row.recipient_display))
    call = row.call or {}
    result = Explanation(interaction={
        "id": row.id, "key": f"{row.channel}:{row.external_id}", "channel": row.channel,
        "direction": row.direction, "occurred_at": row.occurred_at.isoformat(), "language": row.language,
        "customer": _identity(*customer), "conversation": row.conversation_key, "media": len(row.media or ()),
        "call": (f"{call.get('status')}, {call.get('duration_seconds')}s" if call else ""),
        "ingested_at": row.ingested_at.isoformat(),
        "processed_at": row.processed_at.isoformat() if row.processed_at else None,
    })
    if row.person_id is not None:
        result.person = _person(session, row.person_id)
    decision = session.get(RouteDecisionRow, row.id)
    rows = session.scalars(select(OutboxRow).where(OutboxRow.interaction_id == row.id).order_by(OutboxRow.crm))
    result.outbox = [{"crm": o.crm, "status": o.status, "attempts": o.attempts,
                      "last_error": without_text(o.last_error, row.text) if o.last_error else None,
                      "record_id": o.result_ref, "outbox_id": o.id} for o in rows]
    written_to = {o["crm"] for o in result.outbox}  # the CRMs enabled when it was routed
    if decision is not None:
        result.decision = {
            "rule": decision.rule, "decided_at": decision.decided_at.isoformat(),
            "tried": [(str(name), str(reason)) for name, reason in decision.tried],
            "targets": {crm: describe_target(target) for crm, target in sorted(decision.targets.items())
                        if not written_to or crm in written_to},
        }
    return result


def describe_target(target: dict[str, Any]) -> str:
    """`queue billing, priority High, tags billing, vip` from a stored QueueTarget."""
    parts = [f"queue {target.get('queue') or '-'}"]
    if target.get("priority"):
        parts.append(f"priority {target['priority']}")
    if target.get("tags"):
        parts.append(f"tags {', '.join(target['tags'])}")
    return ", ".join(parts)


def _identity(kind: str, value: str, display: str) -> str:
    return f"{kind} {value}" + (f" ({display})" if display and display != value else "")


def _person(session: Session, person_id: int) -> dict[str, Any]:
    person = session.get(PersonRow, person_id)
    merged_into = person.merged_into if person is not None else None
    final = person_id
    seen = {person_id}
    while person is not None and person.merged_into is not None and person.merged_into not in seen:
        final = person.merged_into
        seen.add(final)
        person = session.get(PersonRow, final)
    identities = session.scalars(select(IdentityRow).where(IdentityRow.person_id == final).order_by(IdentityRow.id))
    links = session.scalars(select(CrmLinkRow).where(CrmLinkRow.person_id == final)
                            .order_by(CrmLinkRow.crm, CrmLinkRow.id))
    return {"id": person_id, "merged_into": merged_into,
            "identities": [_identity(i.kind, i.value, i.display) for i in identities],
            "links": [{"crm": link.crm, "object_type": link.object_type, "record_id": link.record_id}
                      for link in links]}
