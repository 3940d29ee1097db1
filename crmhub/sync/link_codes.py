"""Answers to one-time codes: a message from a claimed phone or address that carries its code confirms the claim.

Runs at routing, before the batch's persons are resolved, so the message
that proves the claim already lands on the joined person. One query finds
the pending codes of every sender in the batch; most batches have none.
A code counts only from the identity it was sent to, before it expires,
once; every candidate in the text is compared in constant time; a message
with digits that are not the code is a wrong try, and `max_tries` of them
void the code. The code counts in a quoted line too (a reply quoting the
code's email: only the claimed address received it), but digits only in
quoted lines (`>`) are no try: an earlier message or an older code the
reply quotes must not use up the tries. The join goes through `crmhub.ops.links.confirm`, the one
path a claim joins by (evidence: code).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

import structlog
from sqlalchemy.orm import Session

from crmhub.model import Direction, Interaction
from crmhub.ops import OpsError
from crmhub.ops.links import confirm
from crmhub.store import codes
from crmhub.store import links as store
from crmhub.store.codes import CodeStatus
from crmhub.store.links import LinkStatus
from crmhub.store.linklog import Evidence
from crmhub.sync.identity import IdentityPolicy
from crmhub.sync.links import shown

log = structlog.get_logger("crmhub.link_codes")
# Six digits, also written "123 456" or "123-456"; no longer run of digits (an order number) counts.
CANDIDATE = re.compile(r"(?<![\d])\d{3}[ -]?\d{3}(?![\d])")


def answer_codes(session: Session, items: Sequence[tuple[int, Interaction]], *, policy: IdentityPolicy,
                 crms: Sequence[str], now: datetime) -> set[int]:
    """Check the inbound items of a batch against the codes sent to their senders.

    Returns the interaction ids of bare answers: messages that carried a right
    code and nothing else of the customer's own (no words, no other digits).
    Routing writes those nowhere: an agent has nothing to read in "123456",
    and a reply to a code mail would otherwise open a case of its own.
    """
    if not policy.statements.sends_codes:
        return set()  # the default policies send no codes: routing pays no query for them
    inbound = [(interaction_id, item) for interaction_id, item in items if item.direction is Direction.INBOUND]
    pending = codes.pending_for(session, [item.customer for _, item in inbound])
    if not pending:
        return set()
    by_target: dict[tuple[str, str], list[codes.LinkCodeRow]] = {}
    for row in pending:
        by_target.setdefault((row.target_kind, row.target_value), []).append(row)
    bare: set[int] = set()
    for interaction_id, item in sorted(inbound, key=lambda entry: entry[1].occurred_at):
        candidates, typed = _candidates(item.text or "")
        for row in by_target.get((item.customer.kind.value, item.customer.value), []):
            if row.status != CodeStatus.PENDING:
                continue
            # By crmhub's clock, when it reads the answer: a channel's timestamps may run on another clock.
            if row.expires_at <= now:
                codes.close(row, CodeStatus.EXPIRED, now=now)
                log.info("link code expired", suggestion=row.suggestion_id)
                continue
            if not candidates:
                continue  # a message without a code is no try
            if codes.matches(row, candidates):
                _confirm(session, row, item, policy=policy, crms=crms, now=now)
                if _only_a_code(item.text or ""):
                    bare.add(interaction_id)
                continue
            if not typed:
                continue  # digits only in quoted lines (an earlier message, an older code): no try of theirs
            row.tries += 1
            if row.tries >= policy.codes.rules.max_tries:
                codes.close(row, CodeStatus.VOID, now=now)
            log.warning("link code answered wrong", suggestion=row.suggestion_id, tries=row.tries,
                        void=row.status == CodeStatus.VOID)
    session.flush()
    return bare


def _only_a_code(text: str) -> bool:
    """Whether the sender's own lines hold nothing but six-digit candidates.

    Quoted lines (`>`) are not theirs, nor is the attribution line a mail
    client puts right above a quote ("On Sun, Acme Support wrote:"), so a
    reply to a code mail that only quotes it is bare too.
    """
    own: list[str] = []
    quote_below = False  # whether the next non-blank line below is quoted (read bottom up, once)
    for line in reversed(text.splitlines()):
        if _quoted(line):
            quote_below = True
            continue
        if not (quote_below and line.rstrip().endswith(":")):
            own.append(line)
        quote_below = quote_below and not line.strip()
    return not any(ch.isalnum() for ch in CANDIDATE.sub("", "\n".join(own)))


def _candidates(text: str) -> tuple[list[str], bool]:
    """The six-digit candidates in `text`, and whether any is in the sender's own lines (not quoted with `>`)."""
    found, typed = [], False
    for line in text.splitlines():
        here = [re.sub(r"[ -]", "", m) for m in CANDIDATE.findall(line)]
        found += here
        typed = typed or bool(here) and not _quoted(line)
    return found, typed


def _quoted(line: str) -> bool:
    """A line quoting an earlier message (`>`), not the sender's own words."""
    return line.lstrip().startswith(">")


def _confirm(session: Session, row: codes.LinkCodeRow, item: Interaction, *, policy: IdentityPolicy,
             crms: Sequence[str], now: datetime) -> None:
    """The code came back from its target: join through the one confirm path; the code is spent either way."""
    suggestion = store.get(session, row.suggestion_id)
    if suggestion is None or suggestion.status != LinkStatus.PENDING:
        codes.close(row, CodeStatus.VOID, now=now)  # decided meanwhile by an agent or admin
        return
    codes.close(row, CodeStatus.USED, now=now)
    try:
        confirm(session, row.suggestion_id, policy=policy, crms=crms, now=now,
                by=f"one-time code answered from {shown(item.customer)}", evidence=Evidence.CODE)
    except OpsError as exc:
        log.warning("link code right but not joined", suggestion=row.suggestion_id, reason=str(exc)[:300])
