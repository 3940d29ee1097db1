"""What a customer's text can do to identity: a claim is read narrowly, and by default it never merges anyone.

Issue 12, finding 2: strangers' `@word`s, bare words equal to a handle, a `%@` in an address and "I'm
someone@else" all used to join different people.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crmhub.identities import email, phone
from crmhub.model import Channel, Direction, Identity, IdentityKind, Interaction
from crmhub.store import StateStore, graph, ledger, open_store
from crmhub.sync.identity import IdentityGraph, IdentityPolicy
from crmhub.sync.statements import stated_identities

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
OURS = phone("+14155550100")


def stated(text: str, known: Collection[str] = ()) -> list[Identity]:
    """What `text` states, with `known` as the X handles crmhub knows."""
    return stated_identities(text, regions=["US"], own=[OURS],
                             known=lambda kind, values: {v for v in values if v in known})


def handles(text: str, known: Collection[str] = ()) -> list[str]:
    return [i.value for i in stated(text, known) if i.kind is IdentityKind.X_HANDLE]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[StateStore]:
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    yield store
    store.close()


_SEQ = iter(range(1, 1_000_000))


def sms(sender: Identity, text: str) -> Interaction:
    n = next(_SEQ)
    return Interaction(Channel.SMS, Direction.INBOUND, f"SM{n:032d}", f"sms:{sender.value}:{OURS.value}", sender,
                       OURS, text, NOW)


def person_of(store: StateStore, item: Interaction, policy: IdentityPolicy | None = None) -> int:
    """Ingest `item` and resolve its person, as routing does."""
    with store.transaction() as session:
        ledger.ingest_page(session, [item], now=NOW)
        return IdentityGraph(session, [], policy or IdentityPolicy(), NOW).person_of(item)


# ---- finding 2, reproduced -------------------------------------------------------------------------
def test_an_at_word_in_a_sentence_is_nobody_s_handle() -> None:
    assert handles("my flight with @skyways was late") == []
    assert handles("thanks @skyways, still waiting") == []


def test_two_strangers_naming_the_same_account_stay_two_people(sqlite_store: StateStore) -> None:
    one = person_of(sqlite_store, sms(phone("+14155550123"), "my flight with @skyways was late"))
    two = person_of(sqlite_store, sms(phone("+14155550124"), "my flight with @skyways was late"))
    assert one != two


def test_a_bare_word_equal_to_a_known_handle_is_no_handle() -> None:
    assert handles("thanks for the quick help", known={"thanks"}) == []


def test_a_bare_word_never_lands_on_the_contact_of_that_handle(sqlite_store: StateStore) -> None:
    with sqlite_store.transaction() as session:
        owner = graph.person_for(session, Identity(IdentityKind.X_HANDLE, "thanks", "thanks"), now=NOW)
    sender = person_of(sqlite_store, sms(phone("+14155550123"), "thanks for the quick help"))
    assert sender != owner


def test_an_address_with_a_percent_sign_yields_no_handle() -> None:
    assert handles("write to vict%@example.org please") == []
    assert handles("I'm vict%@example.org") == []


def test_stating_someone_else_s_email_joins_nobody(sqlite_store: StateStore) -> None:
    with sqlite_store.transaction() as session:
        victim = graph.person_for(session, email("victim@example.com"), now=NOW)
    attacker = person_of(sqlite_store, sms(phone("+14155550199"), "I'm victim@example.com"))
    assert attacker != victim
    with sqlite_store.transaction() as session:
        assert graph.holder_of(session, email("victim@example.com")) == victim
        assert graph.identities_of(session, attacker) == [phone("+14155550199")]
