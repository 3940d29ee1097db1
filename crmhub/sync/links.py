"""Telling agents about link suggestions: an internal note on the case of the message that made the claim.

The note names the sender's identity and the claimed one, never the message
text, and says how to confirm: what the agent sets on that very case (each
CRM's connector words it, `link_instruction`), or `crmhub links confirm ID`. It goes on the
case once the message itself is there (its outbox row done), once per
suggestion and CRM: `link_notes` records it, and the connectors find a note
by its key before writing (`crmhub.sync.notes`), so a lost answer never
doubles it. Only pending suggestions are noted: a decided one needs nobody.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import structlog

from crmhub.model import CaseNote, Identity, IdentityKind
from crmhub.store import StateStore
from crmhub.store import links as store
from crmhub.sync.notes import NoteOutcome, NoteWriter, put_note

log = structlog.get_logger("crmhub.links")


class LinkNoteWriter(NoteWriter, Protocol):
    """A CRM connector that writes notes and says what agents set on a case to decide a suggestion."""

    def link_instruction(self, suggestion_id: int) -> str: ...


def note_suggestions(store_: StateStore, writer: LinkNoteWriter, *, now: datetime, limit: int = 50) -> int:
    """Put a note about each pending suggestion on its case in `writer`'s CRM; returns how many were written."""
    with store_.transaction() as session:
        due = [(d.suggestion.id, d.case_id, d.interaction_key, store.claimed_of(d.suggestion),
                _note_text(d.suggestion.id, store.sender_of(d.suggestion), store.claimed_of(d.suggestion),
                           d.suggestion.holder_person_id, writer.link_instruction(d.suggestion.id)))
               for d in store.notes_due(session, writer.name, limit)]
    written = 0
    for suggestion_id, case_id, interaction_key, claimed, text in due:
        # Keyed by what it is about, not by this store's ids, like every other write crmhub keys.
        note = CaseNote(case_id=case_id, key=f"crmhub-link:{interaction_key}:{claimed}", text=text)
        outcome = put_note(writer, note, about=f"link suggestion {suggestion_id}")
        if outcome is NoteOutcome.RETRY:
            continue
        with store_.transaction() as session:
            store.mark_noted(session, suggestion_id, writer.name, case_id, outcome.value, now=now)
        written += outcome is NoteOutcome.WRITTEN
    if written:
        log.info("link suggestions noted", crm=writer.name, notes=written)
    return written


def shown(identity: Identity) -> str:
    """An identity as agents read it: `+14155550123`, `jane@example.com`, `@janeonx`, `X account @janeonx`."""
    if identity.kind is IdentityKind.X_HANDLE:
        return f"X handle @{identity.value}"
    if identity.kind is IdentityKind.X:
        return f"X account @{identity.display}" if identity.display else f"X account {identity.value}"
    return f"{identity.kind.value} {identity.value}"


def _note_text(suggestion_id: int, sender: Identity, claimed: Identity, holder: int | None, instruction: str) -> str:
    known = ("crmhub knows it as another customer: confirming joins their histories" if holder is not None
             else "crmhub has had no message from it yet")
    return (f"crmhub: the customer writing from {shown(sender)} says that {shown(claimed)} is theirs too "
            f"({known}). A claim in a message is no proof, so crmhub has not linked them (link suggestion "
            f"{suggestion_id}).\n"
            f"Once you have checked it with the customer: {instruction} crmhub reads it at its next refresh. "
            f"An admin can also run `crmhub links confirm {suggestion_id}` (or `crmhub links reject "
            f"{suggestion_id}`).")
