"""Salesforce record ids: 15 case-sensitive characters plus a 3-character suffix.

An id is a 3-character key prefix naming the object (003 Contact, 500 Case...),
then characters unique within the org. The 18-character form appends a
checksum of the letter case of the first 15, so it survives case-insensitive
tools; the API accepts both forms and always answers with 18 characters.
"""

from __future__ import annotations

_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_POD = "8d"  # the two "instance" characters after the prefix; any fixed pair will do


def _case_suffix(id15: str) -> str:
    """The 3 checksum characters: one per 5-character chunk, a bit per uppercase letter."""
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(id15[start:start + 5]) if "A" <= ch <= "Z")
        suffix += _SUFFIX_ALPHABET[bits]
    return suffix


def make_id(prefix: str, number: int) -> str:
    """The 18-character id of the `number`-th record with key prefix `prefix`."""
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    id15 = prefix + _POD + digits.rjust(10, "0")
    return id15 + _case_suffix(id15)


def normalize_id(value: object) -> str | None:
    """The 18-character form of a 15- or 18-character id, or None if `value` is no id."""
    if not isinstance(value, str) or not value.isascii() or not value.isalnum():
        return None
    if len(value) == 15:
        return value + _case_suffix(value)
    if len(value) == 18 and _case_suffix(value[:15]) == value[15:].upper():
        return value[:15] + value[15:].upper()
    return None
