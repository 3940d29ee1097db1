"""Internal notes on cases (never shown to the customer), each written once.

A note carries a key; every connector finds a note by its key before writing
one (Salesforce: the Case's unpublished comments; Zendesk: the ticket's
comment metadata; HubSpot: an upsert by `crmhub_key`), so a retry after a
lost answer never writes it twice. Callers record a note as done only after
`put_note` says so.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

import structlog

from crmhub.errors import PermanentError, TransientError
from crmhub.model import CaseNote

log = structlog.get_logger("crmhub.notes")


class NoteWriter(Protocol):
    """A CRM connector that puts internal notes on cases."""

    name: str

    def add_case_note(self, note: CaseNote) -> None: ...


class NoteOutcome(StrEnum):
    WRITTEN = "written"
    RETRY = "retry"  # a transient failure: try again at the next run
    REFUSED = "refused"  # the CRM refused it for good: do not try it for ever


def put_note(writer: NoteWriter, note: CaseNote, *, about: str) -> NoteOutcome:
    """Write `note` on its case; `about` names it in logs (never the note's text)."""
    try:
        writer.add_case_note(note)
    except TransientError as exc:
        log.warning("note not written", crm=writer.name, about=about, error=type(exc).__name__,
                    reason=str(exc)[:200])
        return NoteOutcome.RETRY
    except PermanentError as exc:
        log.error("note refused", crm=writer.name, about=about, error=type(exc).__name__, reason=str(exc)[:200])
        return NoteOutcome.REFUSED
    return NoteOutcome.WRITTEN
