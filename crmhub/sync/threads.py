"""Learn which of crmhub's cases agents closed (or reopened) in each CRM, by cursor.

Threading needs it: a message of a conversation whose case is open goes
onto it; one whose case was closed shortly before (within the reopen
window) reopens it; a later one opens the next case. Only the CRM knows
when an agent closed a case, so each refresh reads the cases changed since
the saved cursor and records their state on the threads (and hands what
agents set about link suggestions to `on_states`). Each page and its
cursor commit together, so a crash re-reads instead of skipping.

Adoption (issue 14): a case this store never opened was opened by an
earlier store in front of the same org; its thread takes it on
(`outbox.adopt_threads`), it is counted, and the CRM's adoption horizon
moves to now (`crmhub.store.adoption`): everything older may have been
written, so it is looked for by key before writing. A store's first full read
sets the horizon too (to the epoch when the CRM holds no case of
crmhub's: nothing to look for), and delivery waits for it
(`threads_loaded`), so no case is opened again before crmhub knows what
the CRM holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Protocol

import structlog
from sqlalchemy.orm import Session

from crmhub.model import CaseState
from crmhub.store import StateStore
from crmhub.store import adoption
from crmhub.store.ledger import load_cursor, save_cursor, touch_cursors
from crmhub.store.cases import Closed
from crmhub.store.outbox import apply_case_states
from crmhub.sync.surveys import SurveyPolicy, ask_on_close

log = structlog.get_logger("crmhub.threads")
STREAM = "cases"


class CaseSource(Protocol):
    """A CRM connector that can list crmhub's cases changed since a cursor."""

    name: str

    def case_pages(self, since: str | None) -> Iterator[tuple[list[CaseState], str]]: ...


def refresh_threads(store: StateStore, source: CaseSource, *, now: datetime,
                    surveys: SurveyPolicy | None = None,
                    on_states: Callable[[list[CaseState]], Callable[[Session], object]] | None = None) -> int:
    """Bring the threads of `source`'s CRM up to date; returns how many changed state (closed or reopened).

    With `surveys`, the cases a page closes get their survey question in the page's transaction.
    `on_states` sees each page before its transaction (it may ask the CRM something, e.g. who set a
    mark, with no transaction open) and returns what runs in the page's transaction, before the cursor
    moves: what agents set on the cases about link suggestions is applied there
    (`crmhub.ops.links.decide_marks`), so a crash re-reads it.
    """
    with store.transaction() as session:
        cursor = load_cursor(session, source.name, STREAM)
    changed = pages = adopted = 0
    for states, next_cursor in source.case_pages(cursor):
        in_transaction = on_states(states) if on_states is not None else None
        with store.transaction() as session:
            closes: list[Closed] = []
            done = apply_case_states(session, source.name, states, closes, now=now)
            if done.adopted:
                adoption.add(session, source.name, {"cases": done.adopted}, now=now)
                adoption.behind(session, source.name, now=now)
            if surveys is not None and closes:
                ask_on_close(session, source.name, closes, surveys, now=now)
            if in_transaction is not None:
                in_transaction(session)
            save_cursor(session, source.name, STREAM, "", next_cursor, now=now)
        pages += 1
        changed += done.changed
        adopted += done.adopted
    with store.transaction() as session:
        touch_cursors(session, source.name, [STREAM], now=now)
        if adoption.horizon(session, source.name) is None:  # a first full read that found no case of crmhub's:
            # nothing to adopt (every write crmhub makes threads into a case), so no write looks first
            adoption.extend_horizon(session, source.name, adoption.NOTHING_BEFORE, now=now)
    log.info("case states refreshed", crm=source.name, pages=pages, changed=changed, adopted=adopted)
    return changed


def threads_loaded(store: StateStore, crm: str) -> bool:
    """Whether this store has read `crm`'s cases in full once (before that, a write could open a case again)."""
    with store.transaction() as session:
        return adoption.horizon(session, crm) is not None
