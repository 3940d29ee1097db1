"""Texts crmhub itself sends to customers (survey questions, notes, template languages), chosen per language.

One place so every feature that speaks to a customer picks its wording the
same way: the conversation's language when a text exists for it, else the
configured default language, else any text there is.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_LANGUAGE = "en"


def pick(texts: Mapping[str, str], language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """The text for `language` (an ISO 639-1 code, or None when unknown), falling back to `default`.

    Raises:
        ValueError: `texts` is empty (settings validation should have refused it).
    """
    if not texts:
        raise ValueError("no texts to pick from")
    for code in (language, default):
        if code and code in texts:
            return texts[code]
    return next(iter(texts.values()))
