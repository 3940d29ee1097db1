"""Learn which of crmhub's cases agents closed (or reopened) in each CRM, by cursor.

Threading needs it: a message of a conversation whose case is open goes
onto it; one whose case was closed shortly before (within the reopen
window) reopens it; a later one opens the next case. Only the CRM knows
when an agent closed a case, so each refresh reads the cases changed since
the saved cursor and records their state on the threads (and hands what
agents set about link suggestions to `on_states`). Each page and its
cursor commit together, so a crash re-reads instead of skipping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Protocol

import structlog
from sqlalchemy.orm import Session

from crmhub.model import CaseState
from crmhub.store import StateStore
from crmhub.store.ledger import load_cursor, save_cursor, touch_cursors
from crmhub.store.outbox import apply_case_states

log = structlog.get_logger("crmhub.threads")
STREAM = "cases"


class CaseSource(Protocol):
    """A CRM connector that can list crmhub's cases changed since a cursor."""

    name: str

    def case_pages(self, since: str | None) -> Iterator[tuple[list[CaseState], str]]: ...


def refresh_threads(store: StateStore, source: CaseSource, *, now: datetime,
                    on_states: Callable[[Session, list[CaseState]], object] | None = None) -> int:
    """Bring the threads of `source`'s CRM up to date; returns how many changed state (closed or reopened).

    `on_states` sees each page in its transaction, before the cursor moves: what agents set on the cases
    about link suggestions is applied there (`crmhub.ops.links.decide_marks`), so a crash re-reads it.
    """
    with store.transaction() as session:
        cursor = load_cursor(session, source.name, STREAM)
    changed = pages = 0
    for states, next_cursor in source.case_pages(cursor):
        with store.transaction() as session:
            changed += apply_case_states(session, source.name, states)
            if on_states is not None:
                on_states(session, states)
            save_cursor(session, source.name, STREAM, "", next_cursor, now=now)
        pages += 1
    with store.transaction() as session:
        touch_cursors(session, source.name, [STREAM], now=now)
    log.info("case states refreshed", crm=source.name, pages=pages, changed=changed)
    return changed
