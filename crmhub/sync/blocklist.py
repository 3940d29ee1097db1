"""Identity values shared by many people (a switchboard, a team mailbox, a placeholder).

Such a value must never tie a message to one customer's record: matching
and contact creation skip it, so the item is still recorded and routed, on
a case with no contact, instead of landing on a stranger's history.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from crmhub.identities import normal_handle
from crmhub.model import Identity, IdentityKind


@dataclass(frozen=True)
class Blocklist:
    """Exact normalised values and patterns matched against the normalised value."""

    values: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def of(cls, values: Iterable[str], patterns: Iterable[str]) -> Blocklist:
        return cls(frozenset(_comparable(v) for v in values), tuple(re.compile(p) for p in patterns))

    def blocks(self, identity: Identity) -> bool:
        keys = {identity.value}
        if identity.kind in (IdentityKind.X, IdentityKind.X_HANDLE) and identity.display:
            keys.add(normal_handle(identity.display))
        return any(k in self.values or any(p.search(k) for p in self.patterns) for k in keys)

    def usable(self, identities: Sequence[Identity]) -> list[Identity]:
        """The identities that may link a person to a record."""
        return [i for i in identities if not self.blocks(i)]


def _comparable(value: str) -> str:
    """Config values are normalised already; handles compare without @ and case."""
    return normal_handle(value) if value.startswith("@") else value
