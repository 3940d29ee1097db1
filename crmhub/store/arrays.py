"""Array parameters for PostgreSQL dumped in a few C passes per array instead of Python work per element.

The batch statements bind their keys and per-row values as arrays (`sets.among`, `sets.unnest`): tens of
thousands of elements in a warm cycle. psycopg's text `ListDumper`, which a list bound as `%s` gets, runs a
regular expression over every element to decide whether it needs quotes, and a substitution with a
template over every element holding a quote or a backslash (every JSON text): about a seventh of a warm
cycle's CPU on PostgreSQL (issue 13). `ArrayDumper` writes an array literal the server reads as the same
array, quoting every element (the array syntax allows it), so that escaping is two `replace` calls over
the joined text of the whole array. Arrays of one element type psycopg dumps as text (strings, ints,
timestamps...) take that way, as do arrays of NULLs only; the rest (NULLs among values, nested lists, an element that dumps to NULL or
holds a NUL) go through psycopg's own code, which also raises its errors.
"""

from __future__ import annotations

from types import NoneType
from typing import Any

from psycopg import postgres
from psycopg.abc import Buffer, Dumper
from psycopg.types.array import ListDumper

__all__ = ["ArrayDumper", "use_array_dumper"]

# Element oids whose psycopg text dumpers write exactly `str(value)` (an int) or the value encoded (a str);
# 0 is psycopg's "unknown" for a str bound as %s, which leaves the type to the statement's cast.
_INT_OIDS = frozenset(postgres.types[name].oid for name in ("int2", "int4", "int8", "numeric"))
_STR_OIDS = frozenset([0, *(postgres.types[name].oid for name in ("text", "varchar"))])


class ArrayDumper(ListDumper):
    """psycopg's text list dumper, quoting and escaping every element in one pass over the whole array."""

    def dump(self, obj: list[Any]) -> Buffer | None:
        sub = self.sub_dumper
        kinds = set(map(type, obj))
        if len(kinds) != 1:  # empty, NULLs among values, mixed types: psycopg's way
            return super().dump(obj)
        kind = kinds.pop()
        if kind is NoneType:
            return b"{" + b",".join([b"NULL"] * len(obj)) + b"}"
        if sub is None:
            return super().dump(obj)
        if kind is int and sub.oid in _INT_OIDS:
            return ("{" + ",".join(map(str, obj)) + "}").encode()
        if kind is str and sub.oid in _STR_OIDS:
            quoted = _quoted("\0".join(obj), len(obj))
            encoding = self.connection.info.encoding if self.connection is not None else "utf-8"
            return quoted.encode(encoding) if quoted is not None else super().dump(obj)
        if kind is not list:
            quoted_bytes = _dumped(sub, obj)
            if quoted_bytes is not None:
                return quoted_bytes
        return super().dump(obj)


def _dumped(sub: Dumper, obj: list[Any]) -> bytes | None:
    """Each element dumped by `sub` (psycopg's C dumpers), quoted and escaped together; None if one is NULL."""
    try:
        joined = b"\0".join([sub.dump(item) for item in obj])  # type: ignore[misc]  # a None (NULL) raises
    except TypeError:
        return None
    if joined.count(b"\0") != len(obj) - 1:
        return None
    return b'{"' + joined.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\0", b'","') + b'"}'


def _quoted(joined: str, count: int) -> str | None:
    """`count` texts joined by NUL as an array literal, each in double quotes; None if a text holds a NUL."""
    if joined.count("\0") != count - 1:
        return None
    return '{"' + joined.replace("\\", "\\\\").replace('"', '\\"').replace("\0", '","') + '"}'


def use_array_dumper(dbapi_connection: Any, _record: Any = None) -> None:
    """Make `ArrayDumper` the dumper of lists bound as `%s` on a new psycopg connection (an engine "connect" hook)."""
    dbapi_connection.adapters.register_dumper(list, ArrayDumper)
