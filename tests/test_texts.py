"""crmhub.texts.pick: the conversation's language, then the default, then any text."""

import pytest

from crmhub.texts import pick

TEXTS = {"en": "How did we do?", "es": "¿Qué tal lo hicimos?"}


def test_the_conversations_language_wins() -> None:
    assert pick(TEXTS, "es") == "¿Qué tal lo hicimos?"


def test_an_unknown_or_missing_language_falls_back_to_the_default() -> None:
    assert pick(TEXTS, None) == "How did we do?"
    assert pick(TEXTS, "tr") == "How did we do?"
    assert pick({"es": "hola"}, "tr") == "hola"


def test_no_texts_is_refused() -> None:
    with pytest.raises(ValueError):
        pick({}, "en")
