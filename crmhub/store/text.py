"""Text the state store can hold, whatever a channel or a CRM sent.

PostgreSQL's text and JSON refuse a NUL, and no UTF-8 store can encode a
lone UTF-16 surrogate (JSON carries one as the escape "\\ud800"). Such a
character in one message or one CRM record must not stop every later sync,
so every write path that stores outside text passes it through `storable`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from crmhub.model import Identity, MirrorRecord

# A NUL (PostgreSQL text and JSON cannot hold it) or a UTF-16 surrogate (UTF-8 cannot: JSON's "\ud800" escape).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The same characters as `repr` writes them: a NUL as \x00, a surrogate as \ud800 (repr escapes what is not
# printable). A literal backslash is written doubled, so text that only looks like an escape matches too:
# the slow walk then finds nothing to replace, which costs time, never a character.
_ESCAPED = re.compile(r"\\(?:x00|ud[89a-f])")


def storable(value: Any) -> Any:
    """`value` with every string the store can hold: kept, with U+FFFD in place of what it cannot.

    A surrogate pair split in two code points is joined into its character
    first; a lone half of one becomes U+FFFD. Dicts, lists and tuples are
    cleaned all the way down (tuples come back as lists: a tuple inside a
    clean container is left as it is, as JSON writes both alike).

    A container whose `repr` shows no such character is returned as it is:
    one pass in C over an already clean payload (nearly every one) instead
    of a Python call per key and value (issue 13).
    """
    if isinstance(value, dict | list | tuple) and _ESCAPED.search(repr(value)) is None:
        return value if not isinstance(value, tuple) else list(value)
    return _clean(value)


def _clean(value: Any) -> Any:
    """`storable`'s walk, for a value that holds (or may hold) an unstorable character."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value) is None:
            return value
        joined = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return joined.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def storable_record(record: MirrorRecord) -> MirrorRecord:
    """A CRM contact with every text the store can hold (names, routing fields, identities from free-text fields)."""
    identities = tuple(Identity(i.kind, storable(i.value), storable(i.display)) for i in record.identities)
    return replace(record, record_id=storable(record.record_id), identities=identities,
                   fields=storable(dict(record.fields)))
