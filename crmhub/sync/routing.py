"""Routing: ordered rules pick a queue per CRM; the first match wins.

Rules come from `mappings/routing.yaml` (built by `crmhub.app.build_router`). Each decision records the winning rule and, for every
rule tried before it, the first condition that failed, so `crmhub explain`
can say why an item went where it went.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crmhub.model import Interaction, QueueTarget, RouteDecision
from crmhub.sync.language import guess_language

@dataclass(frozen=True)
class Rule:
    """One routing rule: conditions (None = any) and the targets per CRM."""

    name: str
    targets: Mapping[str, QueueTarget]
    channels: frozenset[str] | None = None
    direction: str | None = None
    text_pattern: re.Pattern[str] | None = None
    keywords: tuple[str, ...] = ()
    languages: frozenset[str] | None = None
    contact: Mapping[str, Any] = field(default_factory=dict)
    business_hours: bool | None = None
    case_open: bool | None = None

    def mismatch(self, item: Interaction, contact: Mapping[str, Any], *, case_open: bool,
                 in_hours: Callable[[datetime], bool]) -> str | None:
        """Why this rule does not match, or None when it does."""
        if self.channels is not None and item.channel.value not in self.channels:
            return f"channel {item.channel.value} not in {sorted(self.channels)}"
        if self.direction is not None and item.direction.value != self.direction:
            return f"direction is {item.direction.value}, not {self.direction}"
        if self.text_pattern is not None and not self.text_pattern.search(item.text):
            return f"text does not match /{self.text_pattern.pattern}/"
        if self.keywords and not _has_keyword(item.text, self.keywords):
            return f"none of the keywords {list(self.keywords)} in the text"
        if self.languages is not None:
            language = guess_language(item.text)
            if language not in self.languages:
                return f"language {language or 'unknown'} not in {sorted(self.languages)}"
        for name, wanted in self.contact.items():
            if contact.get(name) != wanted:
                return f"contact {name} is {contact.get(name)!r}, not {wanted!r}"
        if self.business_hours is not None and in_hours(item.occurred_at) != self.business_hours:
            return "inside business hours" if self.business_hours is False else "outside business hours"
        if self.case_open is not None and case_open != self.case_open:
            return "a case is already open" if case_open else "no case is open"
        return None


def _has_keyword(text: str, keywords: Sequence[str]) -> bool:
    words = set(re.findall(r"\w+", text.lower()))
    return any(k.lower() in words for k in keywords)


@dataclass(frozen=True)
class Router:
    """The ordered rules, the default targets and the business hours."""

    rules: tuple[Rule, ...]
    default: Mapping[str, QueueTarget]
    in_business_hours: Callable[[datetime], bool] = lambda moment: True

    def decide(self, item: Interaction, contact: Mapping[str, Any], *, case_open: bool = False) -> RouteDecision:
        """The first matching rule's targets (CRMs it leaves out take the default)."""
        tried: list[tuple[str, str]] = []
        for rule in self.rules:
            reason = rule.mismatch(item, contact, case_open=case_open, in_hours=self.in_business_hours)
            if reason is None:
                return RouteDecision(rule.name, {**self.default, **rule.targets}, tuple(tried))
            tried.append((rule.name, reason))
        return RouteDecision("default", dict(self.default), tuple(tried))
