"""Truncation at a field's limit keeps every grapheme cluster whole, in each unit a vendor counts (issue 19)."""

from __future__ import annotations

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from crmhub.connectors._base import TRUNCATED, fit, fit_text, text_size

PIECES = ["a", "é", "e\u0301", "👩\u200d👩\u200d👧", "🇹🇷", "👍🏽", "𠮟", "ب", "\u200f", "न\u094d\u0924\u0947", "ё", " ",
          "\u1100\u1161\u11a8"]
GRAPHEME = regex.compile(r"\X")
UNITS = [{}, {"utf8": True}, {"utf16": True}]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=80), st.integers(30, 200),
       st.sampled_from(UNITS))
def test_a_cut_keeps_whole_graphemes_and_the_limit(pieces: list[str], limit: int, unit: dict[str, bool]) -> None:
    text = "".join(pieces)
    fitted = fit_text(text, limit, **unit)
    assert text_size(fitted, **unit) <= limit
    if fitted == text:
        return
    assert fitted.endswith(TRUNCATED)
    kept = fitted[: -len(TRUNCATED)]
    whole = GRAPHEME.findall(text)
    assert GRAPHEME.findall(kept) == whole[: len(GRAPHEME.findall(kept))]  # a prefix of whole clusters


def test_salesforce_counts_utf16_units_so_an_emoji_is_two() -> None:
    subject = "👍" * 300  # 300 code points, 600 UTF-16 units
    fitted = fit({"Subject": subject}, {"Subject": 255}, utf16=True)["Subject"]
    assert text_size(fitted, utf16=True) <= 255 and fitted.startswith("👍" * 100)
