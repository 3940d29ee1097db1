"""A batch lookup (`among`) finds what an IN list finds, on both databases, for any number of keys; a bulk
UPDATE's per-row values (`per_row`) reach each row."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, select, update

from crmhub.model import Identity, IdentityKind
from crmhub.store import StateStore
from crmhub.store.graph import new_persons
from crmhub.store.schema import IdentityRow
from crmhub.store.sets import among, per_row

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_among_finds_the_rows_an_in_list_finds(store: StateStore) -> None:
    identities = [Identity(IdentityKind.PHONE, f"+1415555{n:04d}") for n in range(60)]
    identities.append(Identity(IdentityKind.EMAIL, "zoë@example.com"))  # non-ASCII travels intact
    with store.transaction() as session:
        persons = new_persons(session, identities, now=NOW)
    ids = sorted(persons.values())
    with store.transaction() as session:
        for values in ([], [identities[0].value], [i.value for i in identities], ["+10000000000", "zoë@example.com"]):
            # one statement text for every size: the same compiled statement binds each call's values
            found = set(session.scalars(select(IdentityRow.value).where(
                among(IdentityRow.kind, ["phone", "email"]), among(IdentityRow.value, values))))
            assert found == set(values) - {"+10000000000"}
        assert set(session.scalars(select(IdentityRow.person_id).where(among(IdentityRow.person_id, ids[:3])))) \
            == set(ids[:3])


def test_among_takes_its_list_at_execution_by_name(store: StateStore) -> None:
    """A statement built once (`claim_due`'s): the list is a named parameter, bound per execution."""
    identities = [Identity(IdentityKind.PHONE, f"+1415555{n:04d}") for n in range(5)]
    with store.transaction() as session:
        new_persons(session, identities, now=NOW)
    query = select(IdentityRow.value).where(among(IdentityRow.value, bindparam("wanted")))
    with store.transaction() as session:
        for wanted in ([], ["+14155550001"], [i.value for i in identities[2:]]):
            assert set(session.scalars(query, {"wanted": wanted})) == set(wanted)


def test_per_row_updates_each_row_with_its_own_values(store: StateStore) -> None:
    """One UPDATE over arrays on PostgreSQL, an executemany elsewhere: each row gets its own values (NULLs: the
    delivery tests' outcomes); a repeated key is applied in turn, as an executemany does."""
    identities = [Identity(IdentityKind.PHONE, f"+1415555{n:04d}", display=f"old {n}") for n in range(4)]
    with store.transaction() as session:
        new_persons(session, identities, now=NOW)
    table = IdentityRow.__table__
    types = {"v": table.c.value.type, "d": table.c.display.type}
    for rows in ([{"v": "+14155550000", "d": "new 0"}, {"v": "+14155550001", "d": ""}],
                 [{"v": "+14155550002", "d": "first"}, {"v": "+14155550002", "d": "second"}]):
        with store.transaction() as session:
            each = per_row(session, rows, types, key="v")
            each.execute(session, update(table).where(table.c.value == each.columns["v"])
                         .values(display=each.columns["d"]))
    with store.transaction() as session:
        shown = {value: display for value, display in session.execute(select(IdentityRow.value, IdentityRow.display))}
    assert shown == {"+14155550000": "new 0", "+14155550001": "", "+14155550002": "second",
                     "+14155550003": "old 3"}
