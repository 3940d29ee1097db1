"""`crmhub conflicts list|resolve`: records of one CRM that turned out to be one customer.

crmhub never merges CRM records. It lists them here with the identities
that tie them together; the admin either merges them in the CRM (crmhub
notices the deleted record at the next mirror refresh and resolves the
conflict itself) or tells crmhub which record to keep writing to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from crmhub.ops import OpsError
from crmhub.store import conflicts, graph
from crmhub.sync.identity import IdentityGraph, IdentityPolicy


@dataclass(frozen=True)
class ConflictView:
    id: int
    crm: str
    person_id: int
    record_ids: list[str]
    primary_id: str
    identities: list[str]
    reason: str
    detected_at: datetime
    resolution: str | None

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "crm": self.crm, "person": self.person_id, "records": self.record_ids,
                "writing_to": self.primary_id, "identities": self.identities, "reason": self.reason,
                "detected_at": self.detected_at.isoformat(), "resolution": self.resolution}


def list_conflicts(session: Session, *, include_resolved: bool = False) -> list[ConflictView]:
    return [ConflictView(row.id, row.crm, row.person_id, list(row.record_ids), row.primary_id,
                         [f"{i.kind.value}:{i.value}" for i in graph.identities_of(session, row.person_id)],
                         row.reason, row.detected_at, row.resolution)
            for row in conflicts.listing(session, include_resolved=include_resolved)]


def resolve(session: Session, conflict_id: int, keep: str, *, now: datetime) -> str:
    """Write to `keep` from now on, and move what crmhub wrote onto it (the full history invariant)."""
    row = conflicts.get(session, conflict_id)
    if row is None:
        raise OpsError(f"no conflict {conflict_id}; `crmhub conflicts list` shows the open ones")
    if row.crm == "crmhub":
        raise OpsError(f"conflict {conflict_id} is an identity limit, not a choice of record: raise "
                       "max_identities_per_kind in identities.yaml or block the shared value")
    if keep not in row.record_ids:
        raise OpsError(f"{keep} is not one of conflict {conflict_id}'s records ({', '.join(row.record_ids)})")
    conflicts.prefer(session, row, keep, now=now)
    IdentityGraph(session, [row.crm], IdentityPolicy(), now).relink(row.person_id, row.crm)
    return (f"Conflict {conflict_id} resolved: crmhub writes to {row.crm} record {keep} and moves what it wrote "
            "onto it at the next delivery.")
