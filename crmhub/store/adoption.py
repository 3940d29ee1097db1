"""Adoption: what this state store found an earlier one had written in a CRM (issue 14 item 6).

A store that is new, or restored from a backup, in front of an org crmhub
already wrote to must not write the same cases and activities again. Two
facts per CRM live here (`adoptions`): the **horizon**, before which an
interaction may have been written by an earlier store (its write finds the
record by crmhub's key first), and **counts** of what was adopted, by
object, for `crmhub status`. Each call is one statement.

The horizon compares an item's time, stamped by the channel's clock, with
ours: "now" is taken `CLOCK_SKEW` late (`behind`), so an item the lost store
wrote moments ago under a clock running ahead of ours is still looked for.
A new item inside that margin costs one look-up by key, nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from crmhub.model import CLOCK_SKEW
from crmhub.store.ledger import dialect_insert
from crmhub.store.schema import AdoptionRow

_TABLE = cast(Table, AdoptionRow.__table__)
HORIZON = ""  # the object_type of the row holding a CRM's horizon
NOTHING_BEFORE = datetime(1970, 1, 1, tzinfo=UTC)  # the horizon of a CRM that held nothing of crmhub's


_HORIZON = select(AdoptionRow.until).where(AdoptionRow.crm == bindparam("crm", type_=AdoptionRow.crm.type),
                                           AdoptionRow.object_type == HORIZON)  # built once: read a dozen times a cycle


def horizon(session: Session, crm: str) -> datetime | None:
    """Interactions from before this time may have been written to `crm` by an earlier store (None: not yet known)."""
    return cast(datetime | None, session.scalar(_HORIZON, {"crm": crm}))


def extend_horizon(session: Session, crm: str, until: datetime, *, now: datetime) -> None:
    """Move `crm`'s horizon forward to `until` (never back)."""
    statement = dialect_insert(session)(_TABLE).values(crm=crm, object_type=HORIZON, count=0, until=until,
                                                       updated_at=now)
    later = _TABLE.c.until.is_(None) | (_TABLE.c.until < statement.excluded.until)
    session.execute(statement.on_conflict_do_update(
        index_elements=["crm", "object_type"], set_={"until": statement.excluded.until,
                                                     "updated_at": statement.excluded.updated_at}, where=later))


def behind(session: Session, crm: str, *, now: datetime) -> datetime:
    """This store may be behind `crm` (restored, or a case it never opened found): everything an earlier store
    could have written until now is looked for first. Returns the horizon set: now plus the clock margin."""
    until = now + CLOCK_SKEW
    extend_horizon(session, crm, until, now=now)
    return until


def add(session: Session, crm: str, counts: Mapping[str, int], *, now: datetime) -> None:
    """Count records adopted in `crm`, by object (e.g. {"cases": 3, "tasks": 12}); one statement."""
    rows = [{"crm": crm, "object_type": name, "count": n, "until": None, "updated_at": now}
            for name, n in sorted(counts.items()) if n]
    if rows:
        statement = dialect_insert(session)(_TABLE)
        session.execute(statement.on_conflict_do_update(
            index_elements=["crm", "object_type"], set_={"count": _TABLE.c.count + statement.excluded.count,
                                                         "updated_at": statement.excluded.updated_at}), rows)


def counts(session: Session) -> dict[str, dict[str, int]]:
    """crm -> object -> records adopted so far."""
    found: dict[str, dict[str, int]] = {}
    for crm, name, n in session.execute(select(AdoptionRow.crm, AdoptionRow.object_type, AdoptionRow.count)
                                        .where(AdoptionRow.object_type != HORIZON)
                                        .order_by(AdoptionRow.crm, AdoptionRow.object_type)):
        found.setdefault(crm, {})[name] = n
    return found
