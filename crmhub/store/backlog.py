"""How many outbox rows of one CRM are due now, counted no further than a batch.

A delivery worker woken by routing asks this before it decides to write at
once (a full batch is due) or to wait out its latency budget. The count
stops at `limit` rows, so it costs a batch at most however long the outbox
is, and it reads `ix_outbox_claim` (status, crm, ...). It is a hint, not a
claim: rows a claim would skip (a case being opened, held by the budget)
are counted too, which at worst makes a batch go a little early.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crmhub.model import OutboxStatus
from crmhub.store.schema import OutboxRow


def due_count(session: Session, crm: str, *, now: datetime, limit: int) -> int:
    """Pending rows of `crm` due at `now` that wait on no CRM job, counted up to `limit`.

    Rows waiting on a job were paid for when it was submitted: they do not
    fill a new batch; the runs that settle them are rung for them (urgent)
    or take them along (`WriteOutcome.urgent`).
    """
    due = (select(OutboxRow.id)
           .where(OutboxRow.status == OutboxStatus.PENDING.value, OutboxRow.crm == crm,
                  OutboxRow.next_attempt_at <= now, OutboxRow.job_ref.is_(None))
           .limit(limit).subquery())
    return int(session.scalar(select(func.count()).select_from(due)) or 0)
