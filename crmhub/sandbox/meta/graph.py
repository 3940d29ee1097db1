"""Graph API reading conventions: the `fields` parameter and cursor paging.

`fields=messages.limit(5){id,created_time,from}` asks for a field and, for
an edge, its own limit and fields; a field left out is not in the answer
(except `id`, always there). An edge or list answers
`{"data": [...], "paging": {"cursors": {"before", "after"}, "next"}}`,
`next` only when there is more. Reference:
developers.facebook.com/docs/graph-api/using-graph-api (field expansion,
cursor-based pagination).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from crmhub.sandbox.meta.models import GraphError

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
_LIMIT = re.compile(r"^(?P<name>[a-z_]+)(?:\.limit\((?P<limit>\d+)\))?$")


@dataclass
class FieldSpec:
    """One requested field: its name, an edge's limit and sub-fields."""

    name: str
    limit: int | None = None
    fields: dict[str, FieldSpec] = field(default_factory=dict)


def parse_fields(text: str | None) -> dict[str, FieldSpec]:
    """`a,b.limit(3){c,d{e}}` -> specs by name; raises GraphError (#100) on a malformed list."""
    if not text:
        return {}
    specs, rest = _parse(text.replace(" ", ""), 0)
    if rest != len(text.replace(" ", "")):
        raise GraphError(f"(#100) Syntax error in fields: {text[:80]!r}", 100)
    return specs


def _parse(text: str, at: int) -> tuple[dict[str, FieldSpec], int]:
    specs: dict[str, FieldSpec] = {}
    while at < len(text) and text[at] != "}":
        end = at
        while end < len(text) and text[end] not in ",{}":
            end += 1
        match = _LIMIT.match(text[at:end])
        if match is None:
            raise GraphError(f"(#100) Syntax error in fields near {text[at:end][:40]!r}", 100)
        spec = FieldSpec(match["name"], int(match["limit"]) if match["limit"] else None)
        at = end
        if at < len(text) and text[at] == "{":
            spec.fields, at = _parse(text, at + 1)
            if at >= len(text) or text[at] != "}":
                raise GraphError("(#100) Syntax error in fields: a '{' is not closed", 100)
            at += 1
        specs[spec.name] = spec
        if at < len(text) and text[at] == ",":
            at += 1
    return specs, at


def check_known(specs: dict[str, FieldSpec], known: tuple[str, ...], node: str) -> None:
    """Graph refuses a field the node type does not have (#100)."""
    for name in specs:
        if name not in known:
            raise GraphError(f"(#100) Tried accessing nonexisting field ({name}) on node type ({node})", 100)


def cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{index}".encode()).decode().rstrip("=")


def _offset(value: str) -> int:
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        kind, _, number = decoded.partition(":")
        if kind != "offset":
            raise ValueError(decoded)
        return int(number)
    except ValueError:
        raise GraphError("(#100) Invalid cursor", 100) from None


def page(items: list[Any], render: Callable[[Any], dict[str, Any]], *, limit: int | None, after: str | None,
         before: str | None, next_url: Callable[[str], str] | None) -> dict[str, Any]:
    """One page of `items` (already in Graph's order) from the cursors, with `paging`."""
    size = min(MAX_LIMIT, max(1, limit or DEFAULT_LIMIT))
    start = _offset(after) + 1 if after else 0
    if before:
        start = max(0, _offset(before) - size)
    chunk = items[start:start + size]
    answer: dict[str, Any] = {"data": [render(item) for item in chunk]}
    if chunk:
        paging: dict[str, Any] = {"cursors": {"before": cursor(start), "after": cursor(start + len(chunk) - 1)}}
        if start + len(chunk) < len(items) and next_url is not None:
            paging["next"] = next_url(paging["cursors"]["after"])
        answer["paging"] = paging
    return answer


def next_link(base: str, path: str, args: dict[str, str], limit: int | None) -> Callable[[str], str]:
    """The `paging.next` URL: the same request with `after` (the access token kept, as Graph does)."""

    def link(after: str) -> str:
        query = {k: v for k, v in args.items() if k not in ("after", "before")}
        if limit:
            query["limit"] = str(limit)
        query["after"] = after
        return f"{base}{path}?{urlencode(query)}"

    return link
