"""A batch lookup (`among`) finds what an IN list finds, on both databases, for any number of keys."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from crmhub.model import Identity, IdentityKind
from crmhub.store import StateStore
from crmhub.store.graph import new_persons
from crmhub.store.schema import IdentityRow
from crmhub.store.sets import among

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
