"""Incremental exports: cursor-based tickets and users, time-based ticket events.

Follows https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/:

* Cursor-based (`/incremental/tickets/cursor.json`, `/incremental/users/cursor.json`):
  items ordered by change time then id; `after_cursor` points past the last
  item and is given even at `end_of_stream`, so the next poll resumes there.
  Tickets are ordered by `generated_timestamp`, users by `updated_at`.
* Time-based (`/incremental/ticket_events.json`): one event per ticket audit,
  `end_time` is the newest timestamp of the page and the next `start_time`.
  As in Zendesk, the events at that timestamp come again on the next page
  (consumers drop repeats by id); a page never splits one timestamp, and a
  page made only of events at `start_time` moves `end_time` one second on,
  so paging always progresses.
* Changes of the last minute are left out (Zendesk's one-minute delay), so a
  test advances the sandbox clock past it. The delay is the emulator setting
  `export_delay_seconds` (default 60, Zendesk's; 0 shows every change at once).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from crmhub.sandbox.zendesk.errors import invalid_parameter
from crmhub.sandbox.zendesk.models import ZendeskBackend
from crmhub.sandbox.zendesk.records import VIA_NAMES, Record, epoch

DELAY_SECONDS = 60
MAX_PER_PAGE = 1000
Position = tuple[int, int]


def encode_cursor(position: Position) -> str:
    """Zendesk-looking cursor: base64 of `<timestamp>.0||<id>|`."""
    return base64.b64encode(f"{position[0]}.0||{position[1]}|".encode()).decode()


def decode_cursor(cursor: str) -> Position:
    try:
        stamp, _, rest = base64.b64decode(cursor, validate=True).decode().partition("||")
        return int(float(stamp)), int(rest.rstrip("|"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_parameter("cursor is invalid") from None


class Exporter:
    """Reads the backend's records as the incremental export endpoints page them."""

    def __init__(self, backend: ZendeskBackend) -> None:
        self.backend = backend

    def cutoff(self) -> int:
        """The newest change time an export may include now."""
        delay = self.backend.state.get("config", {}).get("export_delay_seconds", DELAY_SECONDS)
        return int(self.backend.clock.time()) - int(delay)

    def cursor_page(self, kind: str, after: Position, per_page: int) -> tuple[list[Record], Position, bool]:
        """Tickets or users changed after `after`: (page, new position, end_of_stream)."""
        keyed = sorted(((self._stamp(kind, r), int(r["id"])), r) for r in self._records(kind))
        later = [(key, record) for key, record in keyed if after < key and key[0] <= self.cutoff()]
        page = later[:per_page]
        last = page[-1][0] if page else after
        return [record for _, record in page], last, len(later) <= per_page

    def ticket_events(self, start: int, per_page: int, include_comments: bool) -> tuple[list[Record], int, bool]:
        """Ticket events from `start`: (page, end_time, end_of_stream)."""
        cutoff = self.cutoff()
        audits = sorted((epoch(a["created_at"]), int(a["id"]), a) for a in self.backend.all_audits())
        due = [entry for entry in audits if start <= entry[0] <= cutoff]
        page = due[:per_page]
        if page:
            page += [entry for entry in due[per_page:] if entry[0] == page[-1][0]]
        events = [ticket_event(audit, stamp, include_comments) for stamp, _, audit in page]
        if not page:
            return events, max(start, cutoff), True
        last = page[-1][0]
        return events, last if last > start else start + 1, len(page) == len(due)

    def _records(self, kind: str) -> list[Record]:
        return self.backend.tickets() if kind == "tickets" else self.backend.users()

    @staticmethod
    def _stamp(kind: str, record: Record) -> int:
        return int(record["generated_timestamp"]) if kind == "tickets" else epoch(record["updated_at"])


def ticket_event(audit: Record, stamp: int, include_comments: bool) -> Record:
    """One audit as the ticket events export shows it."""
    via_name = VIA_NAMES.get(audit["via"]["channel"], audit["via"]["channel"])
    return {
        "id": audit["id"], "ticket_id": audit["ticket_id"], "timestamp": stamp,
        "created_at": audit["created_at"], "updater_id": audit["author_id"], "via": via_name,
        "system": audit["metadata"]["system"], "event_type": "Audit", "merged_ticket_ids": [],
        "child_events": [_child_event(event, audit, via_name, include_comments) for event in audit["events"]],
    }


def _child_event(event: Record, audit: Record, via_name: str, include_comments: bool) -> Record:
    common: dict[str, Any] = {"id": event["id"], "via": via_name, "via_reference_id": None}
    if event["type"] == "Comment" and include_comments:
        return {**common, "via": audit["via"], "type": "Comment", "author_id": event["author_id"],
                "body": event["body"], "html_body": event["html_body"], "public": event["public"],
                "attachments": event["attachments"], "audit_id": audit["id"],
                "created_at": audit["created_at"], "event_type": "Comment"}
    if event["type"] == "Comment":
        return {**common, "comment_present": True, "comment_public": event["public"], "event_type": "Comment"}
    child = {**common, event["field_name"]: event["value"], "event_type": event["type"]}
    if event["type"] == "Change":
        child["previous_value"] = event["previous_value"]
    return child
