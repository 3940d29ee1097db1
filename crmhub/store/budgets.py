"""One API pace shared by several daemons on a PostgreSQL store.

Each daemon paces its own calls (`crmhub.connectors._budget`); on a shared
PostgreSQL store they also reserve their calls here, a chunk at a time, so N
daemons together keep the configured pace instead of each taking 1/N of it
by hand.

A system's window of W seconds is cut into `SLOTS` slots of W/SLOTS. A
reservation in the current slot fits while the last `SLOTS + 2` slots
together hold no more than the pace: any W seconds touch at most `SLOTS + 1`
slots, and one more slot covers a call that reaches the vendor just after
the end of the slot it was reserved in. So no stretch of W seconds holds more
calls than configured, whichever daemons made them, as with one daemon's
own sliding log. The price: with every daemon busy, about SLOTS/(SLOTS + 2)
of the pace goes through. Calls of a grant not used within its slot lapse.

A reservation is one short transaction of two statements: a transaction
advisory lock per (system, window), so the sum and the write are one step
for every daemon, then one statement that sums the recent slots, upserts
the current one with what fits and deletes the slots older than the window.
The lock must be its own statement: under READ COMMITTED a statement reads
the snapshot taken when it started, so a sum in the statement that waited
for the lock would miss the reservation committed while it waited. A call that
still ended later than the slot after its grant's (a busy host held it
back) is charged again in the slot it ended in (`charge`), so the
reservations after it see it.
"""

from __future__ import annotations

from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from crmhub.store.db import StateStore
from crmhub.store.locks import one_at_a_time
from crmhub.store.schema import ApiBudgetSlotRow

SLOTS = 10  # slots per window: finer lapses less of a grant, costs more reservations
SPAN = SLOTS + 2  # slots a reservation must fit in (see the module docstring)

# One statement after the lock: what fits, its upsert, and the slots the window left behind.
_RESERVE: TextClause = text(f"""
WITH fits AS (
    SELECT greatest(0, least(:want, :limit - coalesce(sum(used), 0)))::integer AS calls
    FROM api_budget_slots WHERE system = :system AND seconds = :window AND slot > :slot - {SPAN}),
added AS (
    INSERT INTO api_budget_slots (system, seconds, slot, used)
    SELECT :system, :window, :slot, calls FROM fits WHERE calls > 0
    ON CONFLICT (system, seconds, slot) DO UPDATE SET used = api_budget_slots.used + excluded.used
    RETURNING 1),
lapsed AS (
    DELETE FROM api_budget_slots
    WHERE system = :system AND seconds = :window AND slot <= :slot - {SPAN} AND (SELECT calls FROM fits) > 0
    RETURNING 1)
SELECT calls FROM fits""")


class SharedPace:
    """The paces of every system, shared through the store (PostgreSQL; SQLite runs one daemon)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def reserve(self, system: str, seconds: float, limit: int, want: int, now: float) -> tuple[int, float, float]:
        """Reserve up to `want` calls of `system`'s pace of `limit` per `seconds`, at epoch time `now`.

        Returns:
            (calls granted, epoch seconds when the current slot started and when it ends): the
            grant's calls are to be made before it ends; none granted means none fit, ask again then.
        """
        window, length, slot = _slot(seconds, now)
        with self.store.transaction() as session:
            one_at_a_time(session, f"budget:{system}:{window}")
            calls = int(session.scalar(_RESERVE, {"system": system, "window": window, "slot": slot,
                                                  "want": want, "limit": limit}) or 0)
        return calls, slot * length, (slot + 1) * length

    def charge(self, system: str, seconds: float, now: float) -> None:
        """Count one more call of `system` in the slot of epoch `now`, whether it fits or not.

        For a call made later than its grant allowed (a busy host held it back): the
        reservations after it must see it where it landed.
        """
        window, _, slot = _slot(seconds, now)
        with self.store.transaction() as session:
            one_at_a_time(session, f"budget:{system}:{window}")
            _add(session, system, window, slot, 1)


def _slot(seconds: float, now: float) -> tuple[int, float, int]:
    """(the window in whole seconds, a slot's length, the slot of epoch `now`)."""
    window = max(1, round(seconds))
    length = window / SLOTS
    return window, length, int(now // length)


def _add(session: Session, system: str, window: int, slot: int, calls: int) -> None:
    t = ApiBudgetSlotRow
    upsert = insert(t).values(system=system, seconds=window, slot=slot, used=calls)
    session.execute(upsert.on_conflict_do_update(index_elements=[t.system, t.seconds, t.slot],
                                                 set_={"used": t.used + calls}))
