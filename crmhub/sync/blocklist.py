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

_HANDLED = frozenset({IdentityKind.X, IdentityKind.X_HANDLE})  # kinds whose handle (display) is checked too


@dataclass(frozen=True)
class Blocklist:
    """Exact normalised values and patterns matched against the normalised value."""

    values: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def of(cls, values: Iterable[str], patterns: Iterable[str]) -> Blocklist:
        return cls(frozenset(_comparable(v) for v in values), tuple(re.compile(p) for p in patterns))

    def blocks(self, identity: Identity) -> bool:
        """Whether the value (or an X account's handle) is listed; asked for every identity of every batch."""
        if self._lists(identity.value):
            return True
        return identity.kind in _HANDLED and bool(identity.display) and self._lists(normal_handle(identity.display))

    def _lists(self, key: str) -> bool:
        return key in self.values or any(pattern.search(key) for pattern in self.patterns)

    def usable(self, identities: Sequence[Identity]) -> list[Identity]:
        """The identities that may link a person to a record."""
        return [i for i in identities if not self.blocks(i)]


def _comparable(value: str) -> str:
    """Config values are normalised already; handles compare without @ and case."""
    return normal_handle(value) if value.startswith("@") else value
