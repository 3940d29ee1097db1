"""What a customer's text can do to identity: a claim is read narrowly, and by default it never merges anyone.

Issue 12, finding 2: strangers' `@word`s, bare words equal to a handle, a `%@` in an address and "I'm
someone@else" all used to join different people.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    # A throw-away file: no fsync per commit, so the fuzz below stays within seconds.
    event.listen(store.engine, "connect", lambda connection, _: connection.execute("PRAGMA synchronous=OFF"))
    store.engine.dispose()
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


# ---- what still counts, and only as a suggestion ------------------------------------------------------
@pytest.mark.parametrize("text", [
    "I'm @JaneOnX", "btw I am @JaneOnX on X", "my handle is @JaneOnX", "this is @JaneOnX",
    "it's me, @JaneOnX", "It’s me again: @JaneOnX", "you can also reach me at @JaneOnX",
    "soy yo otra vez, @JaneOnX", "mi usuario en X es @JaneOnX", "c'est encore moi, @JaneOnX",
    "je suis @JaneOnX", "ich bin @JaneOnX", "mein Konto auf X ist @JaneOnX", "eu sou @JaneOnX",
    "o meu perfil no X é @JaneOnX", "sono io, @JaneOnX", "il mio account su X è @JaneOnX.",
])
def test_a_handle_after_a_first_person_phrase_is_claimed(text: str) -> None:
    assert handles(text) == ["janeonx"]


@pytest.mark.parametrize("text", [
    "I'm @skyways's biggest fan", "I'm with @skyways", "this is @skyways' fault", "I'm @victim@example.com",
    "I'm @example.org", "I am@janeonx", "my friend is on X as @janeonx", "I'm vict/@janeonx", "I'm @a_very_long_handle_x",
])
def test_a_handle_glued_to_other_text_or_in_someone_else_s_sentence_is_not(text: str) -> None:
    assert handles(text) == []


def test_emails_and_phones_count_anywhere_but_never_our_own() -> None:
    found = stated("call +14155550100 or +44 20 7946 0018; mail jane@example.com or vict%@example.org")
    assert [(i.kind.value, i.value) for i in found] == [
        ("email", "jane@example.com"), ("email", "vict%@example.org"), ("phone", "+442079460018")]


def test_a_claim_is_a_suggestion_stored_once_and_statements_join_still_joins(sqlite_store: StateStore) -> None:
    from crmhub.store import links
    from crmhub.sync.identity import OnStatement, StatementPolicy

    with sqlite_store.transaction() as session:
        victim = graph.person_for(session, email("victim@example.com"), now=NOW)
    sender = phone("+14155550199")
    for _ in range(2):  # said twice: still one suggestion
        person = person_of(sqlite_store, sms(sender, "I'm victim@example.com"))
    with sqlite_store.transaction() as session:
        [row] = links.listing(session)
        assert (row.sender_value, row.claimed_value, row.sender_person_id, row.holder_person_id, row.status) == (
            sender.value, "victim@example.com", person, victim, "pending")
        assert session.get(type(row), row.id).interaction_id is not None

    ignore = IdentityPolicy(statements=StatementPolicy(email=OnStatement.IGNORE))
    person_of(sqlite_store, sms(phone("+14155550198"), "I'm victim@example.com"), ignore)
    join = IdentityPolicy(statements=StatementPolicy(email=OnStatement.JOIN))
    joined = person_of(sqlite_store, sms(phone("+14155550197"), "I'm victim@example.com"), join)
    with sqlite_store.transaction() as session:
        assert len(links.listing(session)) == 1  # ignore stores nothing, join needs no suggestion
        assert graph.holder_of(session, email("victim@example.com")) == joined == victim


# ---- fuzz: arbitrary text never claims a handle out of context, and never merges strangers -------------
KNOWN = ("thanks", "skyways", "janeonx", "hello", "support")
NOT_FIRST_PERSON = ("my flight with", "thanks", "cc", "hey", "flying", "ping", "love", "merci", "danke", "grazie",
                    "obrigado", "gracias", "ask", "lol", "and")
no_at = st.text(alphabet=st.characters(blacklist_characters="@"), max_size=40)
piece = st.one_of(no_at, st.sampled_from(KNOWN),
                  st.builds(lambda ctx, word: f"{ctx} @{word}", st.sampled_from(NOT_FIRST_PERSON),
                            st.from_regex(r"[A-Za-z0-9_]{1,15}", fullmatch=True)))
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.text(max_size=300))
def test_the_parser_never_raises(text: str) -> None:
    stated(text, known=KNOWN)


@FUZZ
@given(st.lists(piece, max_size=8))
def test_known_handles_as_words_and_at_words_out_of_context_claim_no_handle(pieces: list[str]) -> None:
    assert handles(" ".join(pieces), known=KNOWN) == []


_STRANGERS = iter(range(1_000_000))


@settings(FUZZ, max_examples=100)  # each example is two routing transactions on a real store
@given(st.text(max_size=120), st.text(max_size=120), st.sampled_from(["", "I'm {}", "my number is {}", "this is {}"]))
def test_two_strangers_messages_never_merge_them(sqlite_store: StateStore, one: str, two: str, claim: str) -> None:
    n = next(_STRANGERS)
    a, b = phone(f"+1415{3000000 + 2 * n:07d}"), phone(f"+1415{3000001 + 2 * n:07d}")
    first = person_of(sqlite_store, sms(a, one + (" " + claim.format(b.value) if claim else "")))
    second = person_of(sqlite_store, sms(b, two + (" " + claim.format(a.value) if claim else "")))
    assert first != second
    with sqlite_store.transaction() as session:
        assert graph.holder_of(session, a) == first and graph.holder_of(session, b) == second
