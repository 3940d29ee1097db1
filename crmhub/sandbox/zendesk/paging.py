"""Zendesk's two pagination styles, over lists sorted by ascending id.

* Cursor pagination (`page[size]`, `page[after]`, `page[before]`), which
  zenpy asks for on every list endpoint that supports it: the page carries
  `meta {has_more, after_cursor, before_cursor}` and `links {next, prev}`.
  `page[size]` is at most 100.
* Offset pagination (`page`, `per_page`), used when no `page[...]` parameter
  is sent: `next_page`, `previous_page` and `count`. `per_page` is capped at 100.

See https://developer.zendesk.com/api-reference/introduction/pagination/.
Links are built on the host the request reached, so a client following them
stays on the emulator whichever way it was pointed here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request

from crmhub.sandbox.zendesk.errors import invalid_pagination, invalid_parameter

MAX_PAGE_SIZE = 100
Record = dict[str, Any]


def paginate(request: Request, key: str, items: Sequence[Record]) -> dict[str, Any]:
    """One page of `items` under `key`, in the style the request asked for."""
    if any(name.startswith("page[") for name in request.args):
        return cursor_page(request, key, items)
    return offset_page(request, key, items)


def cursor_page(request: Request, key: str, items: Sequence[Record]) -> dict[str, Any]:
    """Cursor pagination: the page after `page[after]` (or before `page[before]`)."""
    size = int_param(request.args, "page[size]", MAX_PAGE_SIZE)
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise invalid_pagination(f"page[size] must be between 1 and {MAX_PAGE_SIZE}, got {size}")
    before = request.args.get("page[before]")
    if before:
        earlier = [item for item in items if item["id"] < _decode(before, "page[before]")]
        window, has_more = earlier[-size:], len(earlier) > size
    else:
        after = request.args.get("page[after]")
        later = [item for item in items if item["id"] > _decode(after, "page[after]")] if after else list(items)
        window, has_more = later[:size], len(later) > size
    after_cursor = _encode(window[-1]["id"]) if window else None
    before_cursor = _encode(window[0]["id"]) if window else None
    return {
        key: window,
        "meta": {"has_more": has_more, "after_cursor": after_cursor, "before_cursor": before_cursor},
        "links": {
            "next": link(request, {"page[size]": size, "page[after]": after_cursor}, drop=("page[before]",))
            if after_cursor else None,
            "prev": link(request, {"page[size]": size, "page[before]": before_cursor}, drop=("page[after]",))
            if before_cursor else None,
        },
    }


def offset_page(request: Request, key: str, items: Sequence[Record]) -> dict[str, Any]:
    """Offset pagination: page `page` of `per_page` items, with the total count."""
    page = max(1, int_param(request.args, "page", 1))
    per_page = min(MAX_PAGE_SIZE, max(1, int_param(request.args, "per_page", MAX_PAGE_SIZE)))
    start = (page - 1) * per_page
    has_next = start + per_page < len(items)
    return {
        key: list(items[start:start + per_page]),
        "next_page": link(request, {"page": page + 1, "per_page": per_page}) if has_next else None,
        "previous_page": link(request, {"page": page - 1, "per_page": per_page}) if page > 1 else None,
        "count": len(items),
    }


def unpaged(key: str, items: Sequence[Record]) -> dict[str, Any]:
    """A complete list in the offset envelope (show_many, identities)."""
    return {key: list(items), "next_page": None, "previous_page": None, "count": len(items)}


def link(request: Request, overrides: Mapping[str, object], drop: Sequence[str] = ()) -> str:
    """The request's own URL with some query parameters replaced or removed."""
    params: dict[str, object] = {k: v for k, v in request.args.items() if k not in drop}
    params.update(overrides)
    return f"{request.base_url}?{urlencode(params)}"


def int_param(args: Mapping[str, str], name: str, default: int) -> int:
    """An integer query parameter; a malformed one is the caller's 400."""
    raw = args.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(str(raw))
    except ValueError:
        raise invalid_parameter(f"{name} must be an integer, got {raw!r}") from None


def _encode(record_id: int) -> str:
    """An opaque cursor (Zendesk's are base64 too) pointing at one record."""
    return base64.urlsafe_b64encode(f"id:{record_id}".encode()).decode().rstrip("=")


def _decode(cursor: str, name: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = text.partition(":")
        if prefix != "id":
            raise ValueError(text)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_pagination(f"{name} is not a valid cursor") from None
