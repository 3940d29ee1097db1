"""One-time codes that confirm a claim: issued with the message that carries them, checked in constant time.

A customer who writes "my number is +1 415 555 0199" (or "my email is
jane@example.com") under `statements: confirm_by_code` gets a code sent to
that number (address) over the channel that can reach it (a `CodeRoute`);
the claim is proven when the code comes back from it. Issuing stores a salted SHA-256 of the
code and queues the message as a row of `replies` (crm `crmhub`), in the
same transaction as the suggestion, so the replies path sends it once and,
after a lost answer, finds it at the channel before sending again. The code
itself is in that message's text only: never in a log, never in this table.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmhub.model import CodeRoute, Identity, ReplyStatus
from crmhub.store import replies
from crmhub.store.schema import LinkCodeRow
from crmhub.store.sets import among

SENDER = "crmhub"  # the `crm` of the replies rows carrying codes: no CRM's reply, no case
REF_PREFIX = replies.CODE_PREFIX  # the reply_ref of a code's message: code:<suggestion>:<n>
DIGITS = 6


class CodeStatus(StrEnum):
    PENDING = "pending"
    USED = "used"
    EXPIRED = "expired"
    VOID = "void"  # too many wrong answers, or the claim was decided another way


@dataclass(frozen=True)
class CodeRules:
    """identities.yaml `codes`: how long a code lives, how many wrong answers void it, how many per claim."""

    expire_after: timedelta = timedelta(minutes=15)
    max_tries: int = 5
    max_per_claim: int = 3


def issue(session: Session, *, suggestion_id: int, target: Identity, route: CodeRoute, ours: Identity,
          rules: CodeRules, now: datetime) -> bool:
    """Queue a new code to `target` for a pending suggestion, unless one is still live or the claim had its share.

    It goes over `route` (its channel, text and conversation) from `ours`. Returns whether a code was issued.
    """
    codes = list(session.scalars(select(LinkCodeRow).where(LinkCodeRow.suggestion_id == suggestion_id)))
    if any(c.status == CodeStatus.PENDING and c.expires_at > now for c in codes) or len(codes) >= rules.max_per_claim:
        return False
    code = f"{secrets.randbelow(10 ** DIGITS):0{DIGITS}d}"
    salt = secrets.token_hex(16)
    reply_ref = f"{REF_PREFIX}{suggestion_id}:{len(codes) + 1}"
    session.add(LinkCodeRow(suggestion_id=suggestion_id, target_kind=target.kind.value, target_value=target.value,
                            reply_ref=reply_ref, salt=salt, code_hash=_hash(salt, code),
                            status=CodeStatus.PENDING.value, tries=0, created_at=now,
                            expires_at=now + rules.expire_after))
    replies.insert(session, [{
        "crm": SENDER, "reply_ref": reply_ref, "case_id": "", "channel": route.channel.value,
        "conversation_key": route.conversation(ours, target, f"{SENDER}:{reply_ref}"),
        "to_kind": target.kind.value, "to_address": target.value, "from_kind": ours.kind.value,
        "from_address": ours.value, "in_reply_to": None, "text": route.text.format(code=code), "author": SENDER,
        "status": ReplyStatus.PENDING.value, "channel_status": "", "attempts": 0, "next_attempt_at": now,
        "written_at": now, "created_at": now, "status_at": now}])
    session.flush()
    return True


def pending_for(session: Session, targets: Sequence[Identity]) -> list[LinkCodeRow]:
    """The pending codes sent to any of `targets` (one query, `ix_link_codes_target`)."""
    if not targets:
        return []
    kinds, values = sorted({t.kind.value for t in targets}), sorted({t.value for t in targets})
    wanted = {(t.kind.value, t.value) for t in targets}
    rows = session.scalars(select(LinkCodeRow).where(among(LinkCodeRow.target_kind, kinds),
                                                     among(LinkCodeRow.target_value, values),
                                                     LinkCodeRow.status == CodeStatus.PENDING.value)
                           .order_by(LinkCodeRow.id))
    return [row for row in rows if (row.target_kind, row.target_value) in wanted]


def matches(row: LinkCodeRow, candidates: Sequence[str]) -> bool:
    """Whether any candidate is the code; every candidate is compared, each in constant time."""
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(_hash(row.salt, candidate), row.code_hash)
    return found


def close(row: LinkCodeRow, status: CodeStatus, *, now: datetime) -> None:
    row.status, row.decided_at = status.value, now


def _hash(salt: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()
