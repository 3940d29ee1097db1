"""`storable`: what the store cannot hold is replaced wherever it hides; a clean payload passes untouched."""

from __future__ import annotations

from crmhub.store.text import storable


def test_unstorable_characters_are_replaced_at_any_depth() -> None:
    payload = {"a": "x\x00y", "b": ["\ud83d\ude00", "\ud800"], "c": ({"d\x00": "ok"},), "n": 5, "none": None}
    assert storable(payload) == {"a": "x\ufffdy", "b": ["\U0001F600", "\ufffd"], "c": [{"d\ufffd": "ok"}],
                                 "n": 5, "none": None}
    assert storable(("t", "\x00")) == ["t", "\ufffd"]
    assert storable("a\x00") == "a\ufffd"


def test_text_that_only_looks_like_an_escape_is_kept() -> None:
    payload = {"path": r"C:\x00\ud800", "emoji": "😀", "nested": [[r"\\x00"]]}
    assert storable(payload) == payload


def test_a_clean_payload_is_returned_as_it_is() -> None:
    payload = {"body": "hello", "media": [{"url": "https://example.com/a.jpg"}], "n": 1.5}
    assert storable(payload) is payload
    assert storable(("a", "b")) == ["a", "b"]

