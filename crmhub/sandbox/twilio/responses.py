"""Handlers: parse a request, call the backend, answer in Twilio's shape.

Every handler is `handler(backend, request, **path_args) -> Response` and
raises `errors.TwilioError` for a vendor error (the emulator renders it).

Lists page the way the 2010-04-01 API does: `PageSize` (default 50, at most
1000), `Page` (a page number the client carries along) and `PageToken`
(`PA<sid>`: the page after that record, `PB<sid>`: the page before it), so a
client following `next_page_uri` neither skips nor repeats records when new
ones arrive meanwhile. Each page carries `uri`, `first_page_uri`,
`next_page_uri`, `previous_page_uri`, `page`, `page_size`, `start` and `end`,
with the list's filters kept in every URI.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import json_response
from crmhub.sandbox.twilio import errors
from crmhub.sandbox.twilio.models import Bound, DateFilter, Record, TwilioBackend, public

Handler = Callable[..., Response]
PAGING = ("Page", "PageSize", "PageToken")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


# ---- shared request parsing and answers -------------------------------------
def found(request: Request, record: Record | None) -> Response:
    """The record, or Twilio's 404 naming the requested path."""
    if record is None:
        raise errors.not_found(request.path)
    return json_response(public(record))


def date_filter(args: MultiDict[str, str], name: str) -> DateFilter:
    """`name`, `name<` and `name>` of the query (e.g. DateSent, DateSent<, DateSent>)."""
    return DateFilter(*(_bound(args, name + suffix) for suffix in ("", "<", ">")))


def _bound(args: MultiDict[str, str], key: str) -> Bound | None:
    """YYYY-MM-DD means the whole UTC day; an ISO 8601 datetime means that instant."""
    value = args.get(key)
    if not value:
        return None
    try:
        if DATE_ONLY.fullmatch(value):
            return Bound.day(datetime.fromisoformat(value))
        return Bound.instant(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise errors.invalid_parameter(key, value) from None


def _integer(args: MultiDict[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = args.get(key)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise errors.invalid_parameter(key, raw)
    return int(raw)


@dataclass(frozen=True)
class Window:
    """Which slice of a list a request asks for."""

    page: int
    size: int
    start: int


def window(args: MultiDict[str, str], rows: Sequence[Record]) -> Window:
    size = _integer(args, "PageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    page = _integer(args, "Page", 0, 0, 10**9)
    token = args.get("PageToken")
    return Window(page, size, _token_start(token, rows, size) if token else page * size)


def _token_start(token: str, rows: Sequence[Record], size: int) -> int:
    sids = [row["sid"] for row in rows]
    kind, sid = token[:2], token[2:]
    if kind not in ("PA", "PB") or sid not in sids:
        raise errors.invalid_parameter("PageToken", token)
    at = sids.index(sid)
    return at + 1 if kind == "PA" else max(0, at - size)


def page(request: Request, key: str, rows: Sequence[Record],
         on_read: Callable[[Sequence[Record]], None] | None = None) -> Response:
    """One page of `rows` under `key`, with Twilio's paging fields."""
    slice_ = window(request.args, rows)
    chunk = rows[slice_.start: slice_.start + slice_.size]
    if on_read is not None:
        on_read(chunk)
    body = {key: [public(row) for row in chunk], **_paging(request, slice_, chunk, len(rows))}
    return json_response(body)


def _paging(request: Request, slice_: Window, chunk: Sequence[Record], total: int) -> dict[str, object]:
    filters = [(k, v) for k, v in request.args.items(multi=True) if k not in PAGING]

    def uri(page_number: int, token: str | None = None) -> str:
        query = [*filters, ("PageSize", str(slice_.size)), ("Page", str(page_number))]
        return f"{request.path}?{urlencode(query + ([('PageToken', token)] if token else []))}"

    more = chunk and slice_.start + len(chunk) < total
    return {
        "end": slice_.start + max(len(chunk) - 1, 0),
        "first_page_uri": uri(0),
        "next_page_uri": uri(slice_.page + 1, "PA" + chunk[-1]["sid"]) if more else None,
        "page": slice_.page,
        "page_size": slice_.size,
        "previous_page_uri": uri(max(slice_.page - 1, 0), "PB" + chunk[0]["sid"]) if chunk and slice_.start else None,
        "start": slice_.start,
        "uri": uri(slice_.page, request.args.get("PageToken")),
    }


# ---- accounts and numbers ---------------------------------------------------
def fetch_account(backend: TwilioBackend, request: Request, account_sid: str) -> Response:
    return found(request, backend.get_account(account_sid))


def list_numbers(backend: TwilioBackend, request: Request, account_sid: str) -> Response:
    rows = backend.list_numbers(account_sid, request.args.get("PhoneNumber"), request.args.get("FriendlyName"))
    return page(request, "incoming_phone_numbers", rows)


def fetch_number(backend: TwilioBackend, request: Request, account_sid: str, sid: str) -> Response:
    return found(request, backend.get_number(account_sid, sid))


# ---- messages and media -----------------------------------------------------
def create_message(backend: TwilioBackend, request: Request, account_sid: str) -> Response:
    form = request.form
    message = backend.create_message(
        account_sid, to=form.get("To", ""), from_=form.get("From", ""),
        service_sid=form.get("MessagingServiceSid", ""), body=form.get("Body", ""),
        media_urls=form.getlist("MediaUrl"), status_callback=form.get("StatusCallback", ""),
        content_sid=form.get("ContentSid", ""), content_variables=form.get("ContentVariables"),
    )
    return json_response(public(message), 201)


def list_messages(backend: TwilioBackend, request: Request, account_sid: str) -> Response:
    args = request.args
    rows = backend.list_messages(account_sid, args.get("To"), args.get("From"), date_filter(args, "DateSent"))
    return page(request, "messages", rows, backend.note_reads)


def fetch_message(backend: TwilioBackend, request: Request, account_sid: str, sid: str) -> Response:
    message = backend.get_message(account_sid, sid)
    if message is not None:
        backend.note_reads([message])
    return found(request, message)


def list_media(backend: TwilioBackend, request: Request, account_sid: str, message_sid: str) -> Response:
    if backend.get_message(account_sid, message_sid) is None:
        raise errors.not_found(request.path)
    rows = backend.list_media(account_sid, message_sid, date_filter(request.args, "DateCreated"))
    return page(request, "media_list", rows)


def fetch_media(backend: TwilioBackend, request: Request, account_sid: str, message_sid: str, sid: str) -> Response:
    return found(request, backend.get_media(account_sid, message_sid, sid))


# ---- calls and recordings ---------------------------------------------------
def list_calls(backend: TwilioBackend, request: Request, account_sid: str) -> Response:
    args = request.args
    rows = backend.list_calls(
        account_sid, to=args.get("To"), from_=args.get("From"), status=args.get("Status"),
        parent_call_sid=args.get("ParentCallSid"),
        started=date_filter(args, "StartTime"), ended=date_filter(args, "EndTime"),
    )
    return page(request, "calls", rows)


def fetch_call(backend: TwilioBackend, request: Request, account_sid: str, sid: str) -> Response:
    return found(request, backend.get_call(account_sid, sid))


def list_recordings(backend: TwilioBackend, request: Request, account_sid: str) -> Response:
    args = request.args
    rows = backend.list_recordings(account_sid, args.get("CallSid"), date_filter(args, "DateCreated"))
    return page(request, "recordings", rows)


def fetch_recording(backend: TwilioBackend, request: Request, account_sid: str, sid: str) -> Response:
    return found(request, backend.get_recording(account_sid, sid))


def list_call_recordings(backend: TwilioBackend, request: Request, account_sid: str, call_sid: str) -> Response:
    if backend.get_call(account_sid, call_sid) is None:
        raise errors.not_found(request.path)
    rows = backend.list_recordings(account_sid, call_sid, date_filter(request.args, "DateCreated"))
    return page(request, "recordings", rows)


def fetch_call_recording(backend: TwilioBackend, request: Request, account_sid: str, call_sid: str,
                         sid: str) -> Response:
    return found(request, backend.get_recording(account_sid, sid, call_sid))
